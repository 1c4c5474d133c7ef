//! The RFC 6962 Merkle tree: hashing, roots, proofs and their checks.
//!
//! Written by hand because the tree must be computed from hashes kept in
//! our own tables (complete subtrees, [`NodeId`]) rather than from leaves
//! held in memory, which the Rust Merkle crates assume.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn hex(h: &Hash) -> String {
    crate::hex::encode(h)
}

pub fn from_hex(s: &str) -> Option<Hash> {
    crate::hex::decode_array(s)
}

/// A complete subtree: leaves `[index << level, (index + 1) << level)`.
/// Level 0 nodes are the leaf hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    /// The node's place in the order a growing tree makes its nodes: the
    /// number of leaves up to its last one, then its level, as
    /// `(end << 6) | level`. Each append makes its leaf and then the
    /// subtrees it completes, bottom up, so the order only ever grows, and
    /// a table keyed by it is only ever appended to. `None` for a node
    /// past the first 2^57 leaves, whose order would not fit in an `i64`.
    pub fn append_order(self) -> Option<u64> {
        let width = 1u64.checked_shl(u32::from(self.level))?;
        let end = self.index.checked_add(1)?.checked_mul(width)?;
        (end < 1 << 57).then_some((end << 6) | u64::from(self.level))
    }

    /// The node at `order`; `None` for a number no node has.
    pub fn from_append_order(order: u64) -> Option<NodeId> {
        let level = (order & 63) as u8;
        let end = order >> 6;
        let index = end >> level;
        (index >= 1 && index << level == end).then(|| NodeId {
            level,
            index: index - 1,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("a consistency proof needs 0 < first <= second, not {first} and {second}")]
    BadSizes { first: u64, second: u64 },
    #[error("the proof does not lead to the root")]
    Mismatch,
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]) from complete-subtree hashes, splitting as RFC 6962
/// does. Every range it is called with starts on a multiple of its largest
/// complete part, so each part is a stored node.
fn range_hash(start: u64, end: u64, get: &mut dyn FnMut(NodeId) -> Hash) -> Hash {
    let n = end - start;
    if n.is_power_of_two() {
        let level = n.trailing_zeros() as u8;
        return get(NodeId {
            level,
            index: start >> level,
        });
    }
    let k = split(n);
    let left = range_hash(start, start + k, get);
    let right = range_hash(start + k, end, get);
    node_hash(&left, &right)
}

/// MTH of the first `size` leaves.
pub fn root(size: u64, get: &mut dyn FnMut(NodeId) -> Hash) -> Hash {
    if size == 0 {
        empty_root()
    } else {
        range_hash(0, size, get)
    }
}

fn path(m: u64, start: u64, end: u64, get: &mut dyn FnMut(NodeId) -> Hash, out: &mut Vec<Hash>) {
    let n = end - start;
    if n == 1 {
        return;
    }
    let k = split(n);
    if m < start + k {
        path(m, start, start + k, get, out);
        out.push(range_hash(start + k, end, get));
    } else {
        path(m, start + k, end, get, out);
        out.push(range_hash(start, start + k, get));
    }
}

/// PATH(index, D[size]): the audit path of a leaf, deepest sibling first.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    get: &mut dyn FnMut(NodeId) -> Hash,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(index, 0, size, get, &mut out);
    Ok(out)
}

fn subproof(
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    get: &mut dyn FnMut(NodeId) -> Hash,
    out: &mut Vec<Hash>,
) {
    let n = end - start;
    if m == n {
        if !whole {
            out.push(range_hash(start, end, get));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, start, start + k, whole, get, out);
        out.push(range_hash(start + k, end, get));
    } else {
        subproof(m - k, start + k, end, false, get, out);
        out.push(range_hash(start, start + k, get));
    }
}

/// PROOF(first, D[second]): that the tree of size `first` is a prefix of
/// the tree of size `second`.
pub fn consistency_proof(
    first: u64,
    second: u64,
    get: &mut dyn FnMut(NodeId) -> Hash,
) -> Result<Vec<Hash>, ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    let mut out = Vec::new();
    if first < second {
        subproof(first, 0, second, true, get, &mut out);
    }
    Ok(out)
}

/// The nodes a computation reads, so that storage can fetch them in one
/// query before the computation runs for real. The shape of the recursion
/// depends on sizes only, never on hash values.
pub fn nodes_needed(run: impl FnOnce(&mut dyn FnMut(NodeId) -> Hash)) -> Vec<NodeId> {
    let mut ids = Vec::new();
    run(&mut |id| {
        ids.push(id);
        [0u8; 32]
    });
    ids.sort();
    ids.dedup();
    ids
}

/// Shifts `fn_` and `sn` right together until `fn_`'s low bit is set or it is 0.
fn shift_until_odd(fn_: &mut u64, sn: &mut u64) {
    while *fn_ & 1 == 0 && *fn_ != 0 {
        *fn_ >>= 1;
        *sn >>= 1;
    }
}

/// RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let (mut fn_, mut sn, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if sn == 0 {
            return Err(ProofError::Mismatch);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                shift_until_odd(&mut fn_, &mut sn);
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 && r == *root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// RFC 9162 §2.1.4.2, with equal sizes accepted for equal roots and an
/// empty proof.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    if first == second {
        return if proof.is_empty() && first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::Mismatch);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::Mismatch);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                shift_until_odd(&mut fn_, &mut sn);
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if fr == *first_root && sr == *second_root && sn == 0 {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// The right edge of a growing tree: one hash per complete subtree of the
/// binary decomposition of its size. Appending a leaf returns the nodes it
/// completes, for storage; the root folds the peaks right to left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<(u8, Hash)>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes from stored peaks (highest level first), as [`peaks_of`] names them.
    pub fn from_peaks(size: u64, peaks: Vec<(u8, Hash)>) -> Self {
        CompactRange { size, peaks }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a leaf hash, keeping only the edge: what a verifier needs.
    pub fn push(&mut self, leaf: Hash) {
        self.append_with(leaf, |_, _| {});
    }

    /// Adds a leaf hash and hands `created` every node it creates, the
    /// leaf first: what storage keeps of the tree.
    pub fn append_with(&mut self, leaf: Hash, mut created: impl FnMut(NodeId, Hash)) {
        created(
            NodeId {
                level: 0,
                index: self.size,
            },
            leaf,
        );
        let mut level = 0u8;
        let mut hash = leaf;
        let mut index = self.size;
        while let Some(&(top_level, left)) = self.peaks.last() {
            if top_level != level {
                break;
            }
            self.peaks.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            created(NodeId { level, index }, hash);
        }
        self.peaks.push((level, hash));
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(&(_, last)) => it.fold(last, |acc, (_, p)| node_hash(p, &acc)),
        }
    }
}

/// The complete subtrees whose hashes make up the right edge at `size`,
/// highest level first.
pub fn peaks_of(size: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        if size & (1 << level) != 0 {
            out.push(NodeId {
                level,
                index: start >> level,
            });
            start += 1 << level;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// The eight leaf inputs shared by the RFC 6962 test suites
    /// (certificate-transparency, trillian, transparency-dev).
    const INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn bytes(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    fn h(s: &str) -> Hash {
        from_hex(s).unwrap()
    }

    /// A tree built by appending, with every node kept, as storage keeps them.
    fn tree(leaves: &[Hash]) -> (CompactRange, HashMap<NodeId, Hash>) {
        let mut c = CompactRange::new();
        let mut nodes = HashMap::new();
        for l in leaves {
            c.append_with(*l, |id, hash| {
                nodes.insert(id, hash);
            });
        }
        (c, nodes)
    }

    fn vector_leaves() -> Vec<Hash> {
        INPUTS.iter().map(|i| leaf_hash(&bytes(i))).collect()
    }

    #[test]
    fn hasher_known_answers() {
        assert_eq!(hex(&empty_root()), ROOTS[0]);
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex(&leaf_hash(b"L123456")),
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        );
    }

    #[test]
    fn roots_match_the_published_vectors() {
        let leaves = vector_leaves();
        for n in 0..=8 {
            let (c, nodes) = tree(&leaves[..n]);
            assert_eq!(hex(&c.root()), ROOTS[n], "compact range, size {n}");
            assert_eq!(
                hex(&root(n as u64, &mut |id| nodes[&id])),
                ROOTS[n],
                "stored nodes, size {n}"
            );
        }
    }

    #[test]
    fn inclusion_proofs_match_the_published_vectors() {
        let (_, nodes) = tree(&vector_leaves());
        let cases: [(u64, u64, &[&str]); 7] = [
            (0, 1, &[]),
            (
                0,
                2,
                &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
            ),
            (
                1,
                2,
                &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
            ),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let got = inclusion_proof(index, size, &mut |id| nodes[&id]).unwrap();
            assert_eq!(
                got.iter().map(hex).collect::<Vec<_>>(),
                want,
                "PATH({index}, {size})"
            );
            let leaf = nodes[&NodeId { level: 0, index }];
            verify_inclusion(index, size, &leaf, &got, &h(ROOTS[size as usize])).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_the_published_vectors() {
        let (_, nodes) = tree(&vector_leaves());
        let cases: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (first, second, want) in cases {
            let got = consistency_proof(first, second, &mut |id| nodes[&id]).unwrap();
            assert_eq!(
                got.iter().map(hex).collect::<Vec<_>>(),
                want,
                "PROOF({first}, {second})"
            );
            verify_consistency(
                first,
                second,
                &h(ROOTS[first as usize]),
                &h(ROOTS[second as usize]),
                &got,
            )
            .unwrap();
        }
    }

    #[test]
    fn bad_requests_and_tampered_proofs_fail() {
        let (_, nodes) = tree(&vector_leaves());
        assert!(matches!(
            inclusion_proof(8, 8, &mut |id| nodes[&id]),
            Err(ProofError::OutOfRange { .. })
        ));
        assert!(matches!(
            consistency_proof(0, 8, &mut |id| nodes[&id]),
            Err(ProofError::BadSizes { .. })
        ));
        assert!(matches!(
            consistency_proof(5, 4, &mut |id| nodes[&id]),
            Err(ProofError::BadSizes { .. })
        ));
        let mut p = inclusion_proof(5, 8, &mut |id| nodes[&id]).unwrap();
        let leaf = nodes[&NodeId { level: 0, index: 5 }];
        p[1][0] ^= 0x08;
        assert_eq!(
            verify_inclusion(5, 8, &leaf, &p, &h(ROOTS[8])),
            Err(ProofError::Mismatch)
        );
        let p = inclusion_proof(5, 8, &mut |id| nodes[&id]).unwrap();
        assert!(verify_inclusion(4, 8, &leaf, &p, &h(ROOTS[8])).is_err());
        assert!(verify_inclusion(5, 7, &leaf, &p, &h(ROOTS[7])).is_err());
        assert!(verify_inclusion(5, 4, &leaf, &p, &h(ROOTS[8])).is_err());
        let c = consistency_proof(6, 8, &mut |id| nodes[&id]).unwrap();
        assert!(verify_consistency(6, 8, &h(ROOTS[5]), &h(ROOTS[8]), &c).is_err());
        assert!(verify_consistency(6, 8, &h(ROOTS[6]), &h(ROOTS[8]), &c[..2]).is_err());
    }

    #[test]
    fn peaks_name_the_right_edge() {
        assert_eq!(peaks_of(0), vec![]);
        assert_eq!(
            peaks_of(7),
            vec![
                NodeId { level: 2, index: 0 },
                NodeId { level: 1, index: 2 },
                NodeId { level: 0, index: 6 }
            ]
        );
        let (c, nodes) = tree(&vector_leaves()[..7]);
        let resumed = CompactRange::from_peaks(
            7,
            peaks_of(7)
                .into_iter()
                .map(|id| (id.level, nodes[&id]))
                .collect(),
        );
        assert_eq!(resumed, c);
    }

    #[test]
    fn a_node_past_the_orders_range_has_none() {
        let last = NodeId {
            level: 0,
            index: (1 << 57) - 2,
        };
        assert_eq!(last.append_order(), Some(((1 << 57) - 1) << 6));
        for id in [
            NodeId {
                level: 0,
                index: (1 << 57) - 1,
            },
            NodeId {
                level: 0,
                index: u64::MAX,
            },
            NodeId {
                level: 57,
                index: 0,
            },
            NodeId {
                level: 64,
                index: 0,
            },
            NodeId {
                level: 3,
                index: u64::MAX / 4,
            },
        ] {
            assert_eq!(id.append_order(), None, "{id:?}");
        }
    }

    #[test]
    fn a_number_no_node_has_is_refused() {
        // End 0, and an end that is not a multiple of the level's width.
        assert_eq!(NodeId::from_append_order(0), None);
        assert_eq!(NodeId::from_append_order((3 << 6) | 1), None);
        assert_eq!(
            NodeId::from_append_order((4 << 6) | 2),
            Some(NodeId { level: 2, index: 0 })
        );
    }

    proptest! {
        /// For every size and leaf, the proof built from stored nodes
        /// verifies against the root, and proofs between any two sizes
        /// verify: the tree only grows.
        #[test]
        fn proofs_verify_for_any_sizes(n in 1u64..300, seed in any::<u64>()) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&(seed ^ i).to_le_bytes())).collect();
            let (c, nodes) = tree(&leaves);
            let mut get = |id: NodeId| nodes[&id];
            let r = root(n, &mut get);
            prop_assert_eq!(r, c.root());
            let index = seed % n;
            let p = inclusion_proof(index, n, &mut get).unwrap();
            prop_assert!(verify_inclusion(index, n, &leaves[index as usize], &p, &r).is_ok());
            let first = 1 + seed % n;
            let first_root = root(first, &mut get);
            let cp = consistency_proof(first, n, &mut get).unwrap();
            prop_assert!(verify_consistency(first, n, &first_root, &r, &cp).is_ok());
            let needed = nodes_needed(|g| { let _ = inclusion_proof(index, n, g); });
            prop_assert!(needed.iter().all(|id| nodes.contains_key(id)));
        }

        /// Nodes are made in the order of their `append_order`, and each
        /// order names its node alone.
        #[test]
        fn nodes_are_made_in_append_order(n in 1u64..600, level in 0u8..40, index in 0u64..(1 << 16)) {
            let mut made = Vec::new();
            let mut c = CompactRange::new();
            for i in 0..n {
                c.append_with(leaf_hash(&i.to_le_bytes()), |id, _| made.push(id.append_order().unwrap()));
            }
            prop_assert!(made.windows(2).all(|w| w[0] < w[1]));
            let id = NodeId { level, index };
            prop_assert_eq!(id.append_order().and_then(NodeId::from_append_order), Some(id));
        }

        #[test]
        fn a_changed_leaf_changes_the_root(n in 1u64..200, which in any::<u64>()) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let mut changed = leaves.clone();
            changed[(which % n) as usize][0] ^= 1;
            prop_assert_ne!(tree(&leaves).0.root(), tree(&changed).0.root());
        }
    }
}
