//! The codes of the `Enum8` columns, defined once per enum: the value a row
//! carries in RowBinary ([`StoredEnum::code`]), its label (what
//! `toString(column)` and `column = 'label'` use in SQL), and the checked
//! way back from a stored code or label — an unknown one is an error,
//! never a default.
//!
//! The domain's own enums (usage-core: [`Access`], [`AssignmentAction`],
//! [`AssignmentVia`], [`TeamSource`]) carry their codes directly, so the
//! ingest writes and reads them with no conversion. The schedule columns get
//! enums of their own here ([`ScheduleFrequency`], [`ScheduleKind`],
//! [`ScheduleFormat`]): their domain types live in usage-report, which this
//! crate cannot depend on, and the report converts at its edge.

use usage_core::event::{Access, AssignmentAction, AssignmentVia};
use usage_core::team::TeamSource;

/// An enum stored in an `Enum8` column.
pub trait StoredEnum: Sized + Copy + 'static {
    /// What the values are, for error messages (`access`).
    const WHAT: &'static str;
    /// Every (label, code), in ascending code order: the column's
    /// `Enum8(...)` type.
    const CODES: &'static [(&'static str, i8)];
    /// Every value, in the order of [`StoredEnum::CODES`].
    const VARIANTS: &'static [Self];

    /// The code written in RowBinary.
    fn code(self) -> i8;
    /// The value of a stored code; an unknown code is an error.
    fn from_code(code: i8) -> Result<Self, UnknownCode>;
    /// The label (`toString(column)`, `column = 'label'`).
    fn label(self) -> &'static str;
    /// The value of a label read with `toString(column)`; an unknown label is
    /// an error.
    fn from_label(label: &str) -> Result<Self, UnknownLabel>;
}

/// A stored `Enum8` code this code does not know (written by a newer
/// version, or not by the pipeline at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} code {code}")]
pub struct UnknownCode {
    pub what: &'static str,
    pub code: i8,
}

/// A stored `Enum8` label this code does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {label:?}")]
pub struct UnknownLabel {
    pub what: &'static str,
    pub label: String,
}

/// Implements [`StoredEnum`] from one list of `Variant = ("label", code)`;
/// the matches are exhaustive, so a variant added to the enum without a code
/// does not compile, and a code given twice is an unreachable pattern.
macro_rules! stored_enum {
    ($ty:ty, $what:literal, { $($variant:ident = ($label:literal, $code:literal)),+ $(,)? }) => {
        impl StoredEnum for $ty {
            const WHAT: &'static str = $what;
            const CODES: &'static [(&'static str, i8)] = &[$(($label, $code)),+];
            const VARIANTS: &'static [Self] = &[$(Self::$variant),+];

            fn code(self) -> i8 {
                match self {
                    $(Self::$variant => $code),+
                }
            }

            fn from_code(code: i8) -> Result<Self, UnknownCode> {
                match code {
                    $($code => Ok(Self::$variant),)+
                    _ => Err(UnknownCode { what: $what, code }),
                }
            }

            fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label),+
                }
            }

            fn from_label(label: &str) -> Result<Self, UnknownLabel> {
                match label {
                    $($label => Ok(Self::$variant),)+
                    _ => Err(UnknownLabel { what: $what, label: label.to_owned() }),
                }
            }
        }
    };
}

stored_enum!(Access, "access", {
    Seat = ("seat", 1),
    Flex = ("flex", 2),
});

stored_enum!(AssignmentAction, "assignment action", {
    Assign = ("assign", 1),
    Unassign = ("unassign", 2),
});

stored_enum!(AssignmentVia, "assignment via", {
    Direct = ("direct", 1),
    Group = ("group", 2),
    Default = ("default", 3),
});

stored_enum!(TeamSource, "team source", {
    Event = ("event", 1),
    Assignment = ("assignment", 2),
});

/// How often a scheduled export runs (`report_schedules.frequency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScheduleFrequency {
    Daily,
    Weekly,
    Monthly,
}

stored_enum!(ScheduleFrequency, "schedule frequency", {
    Daily = ("daily", 1),
    Weekly = ("weekly", 2),
    Monthly = ("monthly", 3),
});

/// What a scheduled export holds (`report_schedules.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScheduleKind {
    /// The usage report's rows.
    Report,
    SeatUsage,
    TokenUsage,
}

stored_enum!(ScheduleKind, "schedule kind", {
    Report = ("report", 1),
    SeatUsage = ("seat_usage", 2),
    TokenUsage = ("token_usage", 3),
});

/// The file a scheduled export writes (`report_schedules.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScheduleFormat {
    Csv,
    Xlsx,
}

stored_enum!(ScheduleFormat, "schedule format", {
    Csv = ("csv", 1),
    Xlsx = ("xlsx", 2),
});

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Debug;

    fn round_trips<E: StoredEnum + PartialEq + Debug>() {
        assert_eq!(E::VARIANTS.len(), E::CODES.len(), "{}", E::WHAT);
        for (value, (label, code)) in E::VARIANTS.iter().zip(E::CODES) {
            assert_eq!((value.label(), value.code()), (*label, *code));
            assert_eq!(E::from_code(*code), Ok(*value));
            assert_eq!(E::from_label(label), Ok(*value));
        }
        assert!(
            E::CODES.windows(2).all(|w| w[0].1 < w[1].1),
            "{}: codes in ascending order, as DESCRIBE TABLE prints them",
            E::WHAT
        );
    }

    fn refuses_unknown<E: StoredEnum + Debug>() {
        for code in [i8::MIN, -1, 0, 4, i8::MAX] {
            if E::CODES.iter().all(|(_, c)| *c != code) {
                assert_eq!(
                    E::from_code(code).expect_err("unknown code"),
                    UnknownCode {
                        what: E::WHAT,
                        code
                    }
                );
            }
        }
        for label in ["", "Seat", "unknown", "1"] {
            assert!(E::from_label(label).is_err(), "{}: {label:?}", E::WHAT);
        }
    }

    #[test]
    fn every_code_and_label_round_trips() {
        round_trips::<Access>();
        round_trips::<AssignmentAction>();
        round_trips::<AssignmentVia>();
        round_trips::<TeamSource>();
        round_trips::<ScheduleFrequency>();
        round_trips::<ScheduleKind>();
        round_trips::<ScheduleFormat>();
    }

    #[test]
    fn an_unknown_code_or_label_is_an_error() {
        refuses_unknown::<Access>();
        refuses_unknown::<AssignmentAction>();
        refuses_unknown::<AssignmentVia>();
        refuses_unknown::<TeamSource>();
        refuses_unknown::<ScheduleFrequency>();
        refuses_unknown::<ScheduleKind>();
        refuses_unknown::<ScheduleFormat>();
        assert_eq!(
            Access::from_code(3).expect_err("unknown").to_string(),
            "unknown access code 3"
        );
    }

    #[test]
    fn access_labels_are_the_contract_spelling() {
        for access in Access::ALL {
            assert_eq!(access.label(), access.as_str());
        }
    }
}
