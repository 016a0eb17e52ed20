//! The embedded store's indexes (by `sid`, by `sub`): which keys each index name holds.
//!
//! Compact because it is per session: names and keys are shared (`Arc<str>`) with the
//! store's entries instead of copied, and the usual index of one member keeps it inline.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The keys one index name holds.
#[allow(
    clippy::box_collection,
    reason = "boxed, the rare set keeps every index entry 32 bytes smaller"
)]
enum Members {
    One(Arc<str>),
    Many(Box<HashSet<Arc<str>>>),
}

impl Members {
    fn insert(&mut self, key: &Arc<str>) {
        match self {
            Members::One(k) if **k == **key => {}
            Members::One(k) => {
                let set: HashSet<Arc<str>> = [Arc::clone(k), Arc::clone(key)].into();
                *self = Members::Many(Box::new(set));
            }
            Members::Many(set) => {
                set.insert(Arc::clone(key));
            }
        }
    }

    /// Takes `key` out; true when none is left.
    fn remove(&mut self, key: &str) -> bool {
        match self {
            Members::One(k) => **k == *key,
            Members::Many(set) => {
                set.remove(key);
                set.is_empty()
            }
        }
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Members::One(k) => vec![k.to_string()],
            Members::Many(set) => set.iter().map(|k| k.to_string()).collect(),
        }
    }
}

/// Index name → keys, bounded by the entries that point at them: every key is removed
/// from its indexes when its entry goes.
#[derive(Default)]
pub(super) struct IndexMap {
    names: HashMap<Arc<str>, Members>,
}

impl IndexMap {
    /// The shared form of index name `name` (the one already held, else a new one).
    pub(super) fn name(&self, name: &str) -> Arc<str> {
        self.names
            .get_key_value(name)
            .map_or_else(|| Arc::from(name), |(held, _)| Arc::clone(held))
    }

    /// Adds `key` to index `name`; gives the name's shared form.
    pub(super) fn insert(&mut self, name: &str, key: &Arc<str>) -> Arc<str> {
        if let Some(held) = self.names.get_key_value(name).map(|(n, _)| Arc::clone(n)) {
            if let Some(members) = self.names.get_mut(name) {
                members.insert(key);
            }
            return held;
        }
        let name: Arc<str> = Arc::from(name);
        self.names
            .insert(Arc::clone(&name), Members::One(Arc::clone(key)));
        name
    }

    /// Takes `key` out of index `name`, and the name out when it holds nothing more.
    pub(super) fn remove(&mut self, name: &str, key: &str) {
        if self.names.get_mut(name).is_some_and(|m| m.remove(key)) {
            self.names.remove(name);
        }
    }

    /// Removes index `name`, giving the keys it held.
    pub(super) fn take(&mut self, name: &str) -> Vec<String> {
        self.names
            .remove(name)
            .map(|m| m.keys())
            .unwrap_or_default()
    }

    /// The keys index `name` holds.
    pub(super) fn members(&self, name: &str) -> Vec<String> {
        self.names.get(name).map(Members::keys).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn members_come_and_go_and_empty_names_are_dropped() {
        let mut idx = IndexMap::default();
        let (k1, k2): (Arc<str>, Arc<str>) = (Arc::from("k1"), Arc::from("k2"));
        let sub = idx.insert("sub:a", &k1);
        idx.insert("sub:a", &k1);
        assert_eq!(idx.members("sub:a"), ["k1"]);
        assert!(
            Arc::ptr_eq(&idx.insert("sub:a", &k2), &sub),
            "names are shared"
        );
        assert_eq!(sorted(idx.members("sub:a")), ["k1", "k2"]);
        assert!(Arc::ptr_eq(&idx.name("sub:a"), &sub));
        idx.remove("sub:a", "k1");
        assert_eq!(idx.members("sub:a"), ["k2"]);
        idx.remove("sub:a", "other");
        idx.remove("sub:a", "k2");
        assert!(idx.names.is_empty());
        idx.insert("sub:a", &k1);
        idx.remove("sub:a", "k2");
        assert_eq!(idx.take("sub:a"), ["k1"]);
        assert!(idx.take("sub:a").is_empty());
        assert!(idx.names.is_empty());
    }
}
