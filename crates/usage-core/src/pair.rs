//! One hash-map key for a (user, product) pair, looked up without allocating.
//!
//! The hot-path state (assignments, Flex windows) is keyed by (user,
//! product). One map with a composite key costs one probe (and one key
//! comparison through the heap) per event instead of two nested ones. The
//! key is `len(user)` (4 bytes, little endian), the user's bytes, then the
//! product's bytes: injective, so no separator can collide. Lookups encode
//! the pair into a stack buffer.

/// The owned composite key.
pub(crate) type PairKey = Box<[u8]>;

use crate::FastMap;

const STACK: usize = 128;

fn encode_into(user: &str, product: &str, out: &mut [u8]) -> usize {
    let len = u32::try_from(user.len()).unwrap_or(u32::MAX).to_le_bytes();
    let n = 4 + user.len() + product.len();
    out[..4].copy_from_slice(&len);
    out[4..4 + user.len()].copy_from_slice(user.as_bytes());
    out[4 + user.len()..n].copy_from_slice(product.as_bytes());
    n
}

/// The owned key of (user, product).
pub(crate) fn pair_key(user: &str, product: &str) -> PairKey {
    let mut out = vec![0u8; 4 + user.len() + product.len()];
    encode_into(user, product, &mut out);
    out.into_boxed_slice()
}

/// Calls `f` with the key of (user, product), encoded on the stack when it
/// fits (ids are short), else on the heap.
pub(crate) fn with_pair_key<R>(user: &str, product: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let n = 4 + user.len() + product.len();
    if n <= STACK && user.len() <= u32::MAX as usize {
        let mut buf = [0u8; STACK];
        let n = encode_into(user, product, &mut buf);
        f(&buf[..n])
    } else {
        f(&pair_key(user, product))
    }
}

/// The entry of (user, product), inserted with a default value when
/// missing; builds the owned key only on insertion.
pub(crate) fn pair_slot<'m, V: Default>(
    map: &'m mut FastMap<PairKey, V>,
    user: &str,
    product: &str,
) -> &'m mut V {
    if !with_pair_key(user, product, |k| map.contains_key(k)) {
        map.insert(pair_key(user, product), V::default());
    }
    with_pair_key(user, product, |k| map.get_mut(k)).expect("entry inserted just above")
}

/// The entry of `key` in a map keyed by owned strings, inserted with a
/// default value when missing; allocates the owned key only on insertion.
pub(crate) fn slot<'m, V: Default>(map: &'m mut FastMap<Box<str>, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.into(), V::default());
    }
    map.get_mut(key).expect("entry inserted just above")
}

/// The (user, product) of a key.
pub(crate) fn split(key: &[u8]) -> (&str, &str) {
    let (len, rest) = key.split_at(4.min(key.len()));
    let mut le = [0u8; 4];
    le[..len.len()].copy_from_slice(len);
    let n = (u32::from_le_bytes(le) as usize).min(rest.len());
    let (user, product) = rest.split_at(n);
    (
        std::str::from_utf8(user).unwrap_or_default(),
        std::str::from_utf8(product).unwrap_or_default(),
    )
}

/// What an allocator takes for a heap block of `n` bytes, roughly: the
/// bytes rounded up to 16 plus 16 of bookkeeping (0 for no block). An
/// estimate for caches bounded by bytes, not an exact count.
pub fn alloc_bytes(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.div_ceil(16) * 16 + 16
    }
}

/// The bytes one entry of a map keyed by (user, product) takes: its slot
/// (key and value, with the hash table's spare capacity) and the key's block.
pub(crate) fn map_entry_bytes<V>(user: &str, product: &str) -> usize {
    // A hash table is at most 7/8 full, and grows by doubling: count each
    // slot about 1.5 times, plus its control byte.
    (std::mem::size_of::<(PairKey, V)>() + 1) * 3 / 2 + alloc_bytes(4 + user.len() + product.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_injective_and_round_trip() {
        assert_ne!(pair_key("ab", "c"), pair_key("a", "bc"));
        assert_eq!(split(&pair_key("user-1", "product")), ("user-1", "product"));
        assert_eq!(split(&pair_key("", "")), ("", ""));
        let long = "é".repeat(100);
        assert_eq!(split(&pair_key(&long, "p")), (long.as_str(), "p"));
        let mut m: FastMap<PairKey, u8> = FastMap::default();
        m.insert(pair_key("u", "p"), 1);
        m.insert(pair_key(&long, "p"), 2);
        assert_eq!(with_pair_key("u", "p", |k| m.get(k).copied()), Some(1));
        assert_eq!(with_pair_key(&long, "p", |k| m.get(k).copied()), Some(2));
        assert_eq!(with_pair_key("up", "", |k| m.get(k).copied()), None);
    }
}
