//! The log's Merkle tree, as Certificate Transparency defines it (RFC 6962 §2.1, RFC 9162 §2.1).
//!
//! Written here rather than taken from a crate: the algorithms are a few dozen lines, and the
//! crates that implement them keep the whole tree in memory, while the writer needs only the
//! O(log n) frontier and verification streams the leaves once.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `HASH(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// `HASH(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: `HASH()`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The roots of the perfect subtrees a tree of `size` leaves is made of, largest (leftmost)
/// first: enough to append a leaf or compute the root without the leaves themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One entry per set bit of `size`, from the highest bit down.
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        // Each trailing one bit of the old size is a subtree of the new leaf's height to merge.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            let Some(left) = self.subtrees.pop() else {
                break;
            };
            carry = node_hash(&left, &carry);
            merges -= 1;
        }
        self.subtrees.push(carry);
        self.size += 1;
    }

    /// The Merkle tree hash of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(last) = subtrees.next() else {
            return empty_root();
        };
        subtrees.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// `MTH(D[n])` of a slice of leaf hashes (RFC 6962 §2.1).
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::new();
    for leaf in leaves {
        frontier.push(*leaf);
    }
    frontier.root()
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The audit path `PATH(index, D[n])` proving that leaf `index` is in the tree of `leaves`
/// (RFC 6962 §2.1.1), or `None` when `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut subtree = leaves;
    let mut index = index;
    // Walk down from the root; the sibling at each level is pushed, then the path is reversed so
    // that it runs leaf to root as the RFC orders it.
    while subtree.len() > 1 {
        let k = split_point(subtree.len());
        let (left, right) = subtree.split_at(k);
        if index < k {
            path.push(root_of(right));
            subtree = left;
        } else {
            path.push(root_of(left));
            subtree = right;
            index -= k;
        }
    }
    path.reverse();
    Some(path)
}

/// Checks an audit path (RFC 9162 §2.1.3.2): does `leaf` sit at `index` of the tree of `size`
/// leaves whose root is `root`?
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && hash == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `MTH` exactly as RFC 6962 §2.1 states it, recursively: the reference the frontier is
    /// checked against.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n);
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&[&(i as u64).to_be_bytes()]))
            .collect()
    }

    #[test]
    fn the_empty_root_is_the_hash_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn matches_the_rfc_6962_test_vector_for_one_empty_leaf() {
        // Certificate Transparency's test vector: the leaf hash of the empty string.
        assert_eq!(
            hex::encode(leaf_hash(&[])),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    proptest! {
        #[test]
        fn frontier_root_equals_the_recursive_definition(n in 0usize..300) {
            let leaves = leaves(n);
            prop_assert_eq!(root_of(&leaves), reference_root(&leaves));
        }

        #[test]
        fn every_inclusion_proof_verifies_and_no_other_leaf_or_index_does(n in 1usize..130, seed in any::<u64>()) {
            let leaves = leaves(n);
            let root = root_of(&leaves);
            let index = (seed % n as u64) as usize;
            let path = inclusion_proof(&leaves, index).unwrap();
            prop_assert!(verify_inclusion(&leaves[index], index as u64, n as u64, &path, &root));
            let other = (index + 1) % n;
            if other != index {
                prop_assert!(!verify_inclusion(&leaves[other], index as u64, n as u64, &path, &root));
                prop_assert!(!verify_inclusion(&leaves[index], other as u64, n as u64, &path, &root));
            }
            prop_assert!(!verify_inclusion(&leaves[index], n as u64, n as u64, &path, &root));
        }
    }
}
