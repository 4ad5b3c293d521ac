//! Decoding within a memory budget: a serde [`Deserializer`] wrapper that
//! charges every allocation the decoded value will make to a fixed budget
//! *before* it is made, and caps every collection.
//!
//! Owns: the accounting. Trusts: nothing in the input. CBOR is compact (an
//! empty string is one byte, a `String` 24 bytes), so a manifest that is
//! small on disk can ask for a value many times its size; the size cap on
//! the manifest alone does not bound memory. Here:
//!
//! * every sequence element is charged, when it is requested, for the
//!   growth of the `Vec` it goes into (modelled exactly as `Vec` grows:
//!   capacity 4, then doubling; the sequence's size hint is withheld, so
//!   nothing is preallocated from a length the input declares);
//! * every string and byte string that is stored is charged for its heap
//!   copy (length plus allocator overhead) when it reaches the visitor
//!   (struct field names and skipped unknown fields are only compared or
//!   skipped, so they are not);
//! * no sequence or map may have more than
//!   [`MAX_CBOR_COLLECTION_LEN`](crate::limits::MAX_CBOR_COLLECTION_LEN)
//!   entries;
//! * the total may not exceed
//!   [`MAX_MANIFEST_DECODED`](crate::limits::MAX_MANIFEST_DECODED).
//!
//! Over-charging is fine (a tuple or an ignored field is charged as if it
//! were a `Vec`); under-charging is not. The one allocation not charged in
//! advance is the decoder's own copy of a string longer than its 4 KiB
//! scratch buffer, which is bounded by the input's length and charged as
//! soon as it is complete.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde::Deserialize;

use crate::limits::{MAX_CBOR_COLLECTION_LEN, MAX_MANIFEST_DECODED};

/// The error message when the budget is exhausted (recognised by
/// [`super::manifest::decode`]).
pub(crate) const OVER_BUDGET: &str = "decoding needs more memory than the budget allows";
/// The error message when a collection is too long.
pub(crate) const TOO_MANY_ENTRIES: &str = "a list has more entries than the cap allows";

/// Bytes a heap copy of `len` bytes takes (glibc: 8 bytes of header,
/// 16-byte granules, 32 bytes at least; nothing for an empty one).
fn heap_cost(len: usize) -> u64 {
    if len == 0 {
        0
    } else {
        ((len as u64).saturating_add(8 + 15) & !15).max(32)
    }
}

/// What is left of the budget.
pub(crate) struct Budget {
    left: Cell<u64>,
}

impl Budget {
    pub(crate) fn new(bytes: u64) -> Budget {
        Budget {
            left: Cell::new(bytes),
        }
    }

    fn charge<E: de::Error>(&self, bytes: u64) -> Result<(), E> {
        match self.left.get().checked_sub(bytes) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(E::custom(OVER_BUDGET))
            }
        }
    }
}

/// `T`, decoded within [`MAX_MANIFEST_DECODED`]. Decode a `Budgeted<T>` with
/// any self-describing deserializer; the budget lives for that one call.
pub(crate) struct Budgeted<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Budgeted<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let budget = Budget::new(MAX_MANIFEST_DECODED);
        let value = T::deserialize(De {
            inner: d,
            budget: &budget,
        });
        #[cfg(test)]
        LAST_CHARGED.with(|c| c.set(MAX_MANIFEST_DECODED - budget.left.get()));
        value.map(Budgeted)
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes charged by the last [`Budgeted`] decode on this thread.
    pub(crate) static LAST_CHARGED: Cell<u64> = const { Cell::new(0) };
}

/// The wrapped deserializer.
pub(crate) struct De<'b, D> {
    pub(crate) inner: D,
    pub(crate) budget: &'b Budget,
}

/// The wrapped visitor.
struct Vis<'b, V> {
    inner: V,
    budget: &'b Budget,
    /// Whether strings it sees are stored (false for struct field names and
    /// ignored values, which are compared or skipped, never copied).
    stored: bool,
}

impl<V> Vis<'_, V> {
    fn charge_copy<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if self.stored {
            self.budget.charge(heap_cost(len))
        } else {
            Ok(())
        }
    }
}

macro_rules! forward_de {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Vis { inner: visitor, budget: self.budget, stored: true })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = D::Error;

    forward_de! {
        deserialize_any deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_identifier(Vis {
            inner: visitor,
            budget: self.budget,
            stored: false,
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_ignored_any(Vis {
            inner: visitor,
            budget: self.budget,
            stored: false,
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(
            name,
            Vis {
                inner: visitor,
                budget: self.budget,
                stored: true,
            },
        )
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(
            name,
            Vis {
                inner: visitor,
                budget: self.budget,
                stored: true,
            },
        )
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(
            len,
            Vis {
                inner: visitor,
                budget: self.budget,
                stored: true,
            },
        )
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple_struct(
            name,
            len,
            Vis {
                inner: visitor,
                budget: self.budget,
                stored: true,
            },
        )
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            Vis {
                inner: visitor,
                budget: self.budget,
                stored: true,
            },
        )
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(
            name,
            variants,
            Vis {
                inner: visitor,
                budget: self.budget,
                stored: true,
            },
        )
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool: bool
        visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64 visit_i128: i128
        visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64 visit_u128: u128
        visit_f32: f32 visit_f64: f64 visit_char: char
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.charge_copy(v.len())?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.charge_copy(v.len())?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.charge_copy(v.len())?;
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.charge_copy(v.len())?;
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.charge_copy(v.len())?;
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.charge_copy(v.len())?;
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(De {
            inner: d,
            budget: self.budget,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(De {
            inner: d,
            budget: self.budget,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Seq {
            inner: seq,
            budget: self.budget,
            count: 0,
            capacity: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            budget: self.budget,
            count: 0,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Enum {
            inner: data,
            budget: self.budget,
        })
    }
}

/// A wrapped seed: what it deserializes goes through [`De`].
struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(De {
            inner: d,
            budget: self.budget,
        })
    }
}

/// The seed offered for an entry past the cap: the end of the list passes
/// (it is never called), an entry is an error before it is decoded.
struct Refuse<V>(PhantomData<V>);

impl<'de, V> DeserializeSeed<'de> for Refuse<V> {
    type Value = V;

    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<V, D::Error> {
        Err(de::Error::custom(TOO_MANY_ENTRIES))
    }
}

/// A wrapped sequence: counts its elements and charges the growth of the
/// `Vec` they would fill.
struct Seq<'b, A> {
    inner: A,
    budget: &'b Budget,
    count: u64,
    /// The capacity a `Vec` filled from this sequence has now.
    capacity: u64,
}

/// The capacity `Vec` grows to when an element is pushed onto a full one
/// (`RawVec`: doubling, and at least 8, 4 or 1 elements by element size).
fn grown_capacity(capacity: u64, elem_size: u64) -> u64 {
    let min = match elem_size {
        1 => 8,
        2..=1024 => 4,
        _ => 1,
    };
    capacity.saturating_mul(2).max(capacity + 1).max(min)
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.count += 1;
        if self.count > MAX_CBOR_COLLECTION_LEN {
            // Only the end of the list may follow.
            return self.inner.next_element_seed(Refuse(PhantomData));
        }
        let size = std::mem::size_of::<T::Value>() as u64;
        if self.count > self.capacity {
            let grown = grown_capacity(self.capacity, size);
            self.budget
                .charge(grown.saturating_sub(self.capacity).saturating_mul(size))?;
            self.capacity = grown;
        }
        self.inner.next_element_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    /// Withheld: a length the input declares must not size an allocation.
    fn size_hint(&self) -> Option<usize> {
        None
    }
}

/// A wrapped map: counts its entries. Struct fields are stored inline, so
/// only the keys' and values' own contents are charged.
struct Map<'b, A> {
    inner: A,
    budget: &'b Budget,
    count: u64,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.count += 1;
        if self.count > MAX_CBOR_COLLECTION_LEN {
            return self.inner.next_key_seed(Refuse(PhantomData));
        }
        self.inner.next_key_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        None
    }
}

/// A wrapped enum.
struct Enum<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'b, A> {
    type Error = A::Error;
    type Variant = Variant<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(Seed {
            inner: seed,
            budget: self.budget,
        })?;
        Ok((
            value,
            Variant {
                inner: variant,
                budget: self.budget,
            },
        ))
    }
}

/// A wrapped enum variant.
struct Variant<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Vis {
                inner: visitor,
                budget: self.budget,
                stored: true,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Vis {
                inner: visitor,
                budget: self.budget,
                stored: true,
            },
        )
    }
}
