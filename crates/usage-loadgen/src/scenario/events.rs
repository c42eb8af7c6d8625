//! Events as the generator holds them before publishing: compact (ids as
//! indices, serialised only when emitted), and [`Pending`] ordered by
//! publish time for the stream's heap.

use std::cmp::Ordering;

use crate::poison::PoisonKind;
use crate::{Access, Reason, Via};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TeamField {
    Absent,
    Null,
    Team(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnlineField {
    Absent,
    Null,
    True,
    False,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Auth {
    pub(super) user: u32,
    pub(super) product: u16,
    pub(super) access: Access,
    pub(super) team: TeamField,
    pub(super) online: OnlineField,
    pub(super) version: u8,
    /// 0: absent, 255: null, k: the user's machine k.
    pub(super) machine: u8,
    /// 0: none; k: `HOSTILE[k-1]`, in `product_version` (odd k) or `machine_id`.
    pub(super) hostile: u8,
    /// 0: `Z`; k: one of the offsets.
    pub(super) offset: u8,
    pub(super) intended: Option<Reason>,
}

impl Auth {
    pub(super) fn special(
        user: u32,
        product: u16,
        access: Access,
        team: TeamField,
        reason: Reason,
    ) -> Auth {
        Auth {
            user,
            product,
            access,
            team,
            online: OnlineField::Absent,
            version: 0,
            machine: 0,
            hostile: 0,
            offset: 0,
            intended: Some(reason),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Body {
    Team(u16),
    Rate {
        product: u16,
        idx: u8,
    },
    Profile(u32),
    Membership {
        team: u16,
        group: u8,
        user: u32,
        member: bool,
    },
    Merge {
        from: u16,
        into: u16,
    },
    Assignment {
        assign: bool,
        team: u16,
        user: u32,
        product: u16,
        access: Access,
        via: Via,
        group: Option<u8>,
    },
    Auth(Auth),
    Poison {
        kind: PoisonKind,
        user: u32,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Ev {
    pub(super) id: u64,
    pub(super) at: i64,
    pub(super) body: Body,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) pt: i64,
    pub(super) late: bool,
    pub(super) seq: u64,
    pub(super) ev: Ev,
    pub(super) copy: bool,
    pub(super) late_assignment: bool,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: `BinaryHeap` pops the smallest (pt, late, seq).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.pt, other.late, other.seq).cmp(&(self.pt, self.late, self.seq))
    }
}
