// A JVM workload for the real-programs end-to-end test: warm up, be
// dumped, be restored, carry on. Run with the single-file source launcher
// (`java Warm.java DIR`), which needs only a JRE (the jdk.compiler module
// is part of Debian's openjdk-17-jre-headless runtime image).
//
// Warm-up: a fixed pool of 4 threads runs rounds of work (sorting,
// hashing, boxing through a HashMap) until the JIT has compiled the hot
// methods and a round takes a steady time. The JVM keeps state: a
// HashMap of 200 000 entries, a running CRC over every round's results,
// and per-worker counters. After warm-up it writes DIR/ready (with the
// warm round time) and polls for DIR/go. Then it runs 20 more rounds on
// the same pool and checks itself:
//  - the running CRC equals the one recomputed from scratch on the main
//    thread;
//  - the map is intact, the worker counters add up, and the pool still
//    has its 4 threads (same names);
//  - a daemon thread parked in Object.wait wakes when notified.
// It writes "OK" or "FAIL: <what differs>" to DIR/result (and the time
// of the first round after go, for the log) and exits 0.

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.zip.CRC32;

public class Warm {
    static final int WORKERS = 4;
    static final int TASKS = 16;
    static final AtomicLongArray perWorker = new AtomicLongArray(WORKERS);
    static final ThreadLocal<Integer> workerIndex = new ThreadLocal<>();
    static final AtomicInteger nextIndex = new AtomicInteger();

    static long task(int round, int t) {
        Integer idx = workerIndex.get();
        if (idx == null) {
            idx = nextIndex.getAndIncrement() % WORKERS;
            workerIndex.set(idx);
        }
        perWorker.incrementAndGet(idx);
        return compute(round * 1000 + t);
    }

    static long compute(int seed) {
        long x = seed * 0x9E3779B97F4A7C15L;
        int[] a = new int[4096];
        for (int i = 0; i < a.length; i++) {
            x ^= x << 13; x ^= x >>> 7; x ^= x << 17;
            a[i] = (int) x;
        }
        Arrays.sort(a);
        Map<Integer, Integer> m = new HashMap<>();
        for (int i = 0; i < a.length; i += 4) {
            m.merge(a[i] & 1023, 1, Integer::sum);
        }
        long h = m.size();
        for (int i = 0; i < a.length; i += 64) {
            h = h * 31 + a[i];
        }
        return h;
    }

    static long runRound(ExecutorService pool, int round, CRC32 crc) throws Exception {
        List<Future<Long>> fs = new ArrayList<>();
        for (int t = 0; t < TASKS; t++) {
            final int tt = t;
            fs.add(pool.submit(() -> task(round, tt)));
        }
        long start = System.nanoTime();
        for (Future<Long> f : fs) {
            long v = f.get(30, TimeUnit.SECONDS);
            for (int i = 0; i < 8; i++) {
                crc.update((int) (v >>> (8 * i)));
            }
        }
        return System.nanoTime() - start;
    }

    static TreeSet<String> poolThreads() {
        TreeSet<String> names = new TreeSet<>();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith("pool-")) {
                names.add(t.getName());
            }
        }
        return names;
    }

    static void writeAtomically(Path dir, String name, String text) throws Exception {
        Path tmp = dir.resolve(name + ".tmp");
        Files.writeString(tmp, text);
        Files.move(tmp, dir.resolve(name), StandardCopyOption.ATOMIC_MOVE);
    }

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        Map<Integer, String> big = new HashMap<>();
        for (int i = 0; i < 200000; i++) {
            big.put(i, "v" + (i * 7));
        }
        final Object parkLock = new Object();
        final boolean[] released = {false};
        final boolean[] woke = {false};
        Thread parked = new Thread(() -> {
            synchronized (parkLock) {
                while (!released[0]) {
                    try {
                        parkLock.wait();
                    } catch (InterruptedException e) {
                        return;
                    }
                }
                woke[0] = true;
                parkLock.notifyAll();
            }
        }, "parked");
        parked.setDaemon(true);
        parked.start();

        AtomicInteger threadNo = new AtomicInteger();
        ExecutorService pool = Executors.newFixedThreadPool(WORKERS,
                r -> new Thread(r, "pool-" + threadNo.getAndIncrement()));
        CRC32 crc = new CRC32();
        int round = 0;
        long warm = Long.MAX_VALUE;
        long first = 0;
        // Warm up: at least 60 rounds, until a round is within 20% of the best.
        for (; round < 400; round++) {
            long t = runRound(pool, round, crc);
            if (round == 0) {
                first = t;
            }
            if (round >= 60 && t < warm * 12 / 10) {
                warm = Math.min(warm, t);
                round++;
                break;
            }
            warm = Math.min(warm, t);
        }
        int roundsBefore = round;
        TreeSet<String> before = poolThreads();
        writeAtomically(dir, "ready", "ready\n");
        System.out.printf("Warm %d: ready after %d rounds, first round %d us, warm round %d us, pool %s%n",
                ProcessHandle.current().pid(), roundsBefore, first / 1000, warm / 1000, before);

        while (!Files.exists(dir.resolve("go"))) {
            Thread.sleep(20);
        }
        long afterGo = runRound(pool, round++, crc);
        for (int i = 1; i < 20; i++) {
            runRound(pool, round++, crc);
        }

        List<String> problems = new ArrayList<>();
        CRC32 again = new CRC32();
        for (int r = 0; r < round; r++) {
            for (int t = 0; t < TASKS; t++) {
                long v = compute(r * 1000 + t);
                for (int i = 0; i < 8; i++) {
                    again.update((int) (v >>> (8 * i)));
                }
            }
        }
        if (again.getValue() != crc.getValue()) {
            problems.add("the running CRC differs from the one recomputed");
        }
        long sum = 0;
        for (int i = 0; i < WORKERS; i++) {
            sum += perWorker.get(i);
        }
        if (sum != (long) round * TASKS) {
            problems.add("the worker counters add up to " + sum + ", expected " + (long) round * TASKS);
        }
        if (big.size() != 200000 || !big.get(199999).equals("v" + (199999 * 7))) {
            problems.add("the map of 200000 entries changed");
        }
        TreeSet<String> after = poolThreads();
        if (!after.equals(before) || before.size() != WORKERS) {
            problems.add("the pool had " + before + ", now " + after);
        }
        synchronized (parkLock) {
            released[0] = true;
            parkLock.notifyAll();
            long deadline = System.currentTimeMillis() + 10000;
            while (!woke[0] && System.currentTimeMillis() < deadline) {
                parkLock.wait(100);
            }
        }
        if (!woke[0]) {
            problems.add("the thread parked in Object.wait did not wake");
        }
        pool.shutdown();
        if (!pool.awaitTermination(10, TimeUnit.SECONDS)) {
            problems.add("the pool did not shut down");
        }
        String result = problems.isEmpty() ? "OK\n" : "FAIL: " + String.join("; ", problems) + "\n";
        System.out.printf("Warm %d: first round after go %d us (warm %d us); %s",
                ProcessHandle.current().pid(), afterGo / 1000, warm / 1000, result);
        writeAtomically(dir, "result", result);
        System.exit(0);
    }
}
