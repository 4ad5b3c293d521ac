/*
 * ckpt_mark: a tiny shared library (libckptmark.so) for resuid_report.
 *
 * The tests build it into a root-owned directory and link resuid_report
 * against it with an absolute rpath, so the library is one of the
 * file-backed mappings a privileged restore must check against its signed
 * digest. A test then changes the file on disk after the dump (and puts it
 * back afterwards).
 */
int ckpt_mark(void);

int ckpt_mark(void)
{
	return 42;
}
