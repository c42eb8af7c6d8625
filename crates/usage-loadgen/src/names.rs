//! Fixed vocabularies of the generator: products, teams, groups, people, and
//! hostile strings.

/// A product of the catalogue: code, display name, initial daily Flex rate
/// in thousandths of a token, and the versions seen in authorizations.
#[derive(Debug, Clone, Copy)]
pub struct ProductDef {
    pub code: &'static str,
    pub name: &'static str,
    pub rate_milli: u64,
    pub versions: &'static [&'static str],
}

const V_YEARLY: &[&str] = &["2024", "2025", "2025.2", "2026", "2026.1", "2027"];
const V_SEMVER: &[&str] = &["2.0.17", "2.0.18", "2.0.19", "2.1.0"];

/// The product pool, most popular first (`ScenarioConfig::products` takes
/// the first N).
pub const PRODUCTS: &[ProductDef] = &[
    ProductDef {
        code: "autocad",
        name: "AutoCAD",
        rate_milli: 7_000,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "revit",
        name: "Revit",
        rate_milli: 10_000,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "civil3d",
        name: "Civil 3D",
        rate_milli: 9_000,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "inventor",
        name: "Inventor",
        rate_milli: 6_000,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "maya",
        name: "Maya",
        rate_milli: 8_000,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "3dsmax",
        name: "3ds Max",
        rate_milli: 8_000,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "fusion",
        name: "Fusion",
        rate_milli: 4_500,
        versions: V_SEMVER,
    },
    ProductDef {
        code: "navisworks",
        name: "Navisworks Manage",
        rate_milli: 3_250,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "recap",
        name: "ReCap Pro",
        rate_milli: 2_125,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "vred",
        name: "VRED Professional",
        rate_milli: 5_000,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "alias",
        name: "Alias AutoStudio",
        rate_milli: 9_500,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "mudbox",
        name: "Mudbox",
        rate_milli: 1_500,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "arnold",
        name: "Arnold",
        rate_milli: 2_500,
        versions: V_SEMVER,
    },
    ProductDef {
        code: "infraworks",
        name: "InfraWorks",
        rate_milli: 6_750,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "plant3d",
        name: "Plant 3D",
        rate_milli: 7_125,
        versions: V_YEARLY,
    },
    ProductDef {
        code: "advance-steel",
        name: "Advance Steel",
        rate_milli: 7_000,
        versions: V_YEARLY,
    },
];

/// A Flex product that never gets a `product_rate` (only with poison): its
/// few Flex authorizations are expected as `unknown_rate` dead letters.
pub const NO_RATE_PRODUCT: ProductDef = ProductDef {
    code: "flame",
    name: "Flame",
    rate_milli: 0,
    versions: V_YEARLY,
};

/// A product nobody is ever assigned (only with poison): its authorizations
/// without `team_id` are expected as `unresolved_team` dead letters.
pub const UNHELD_PRODUCT: ProductDef = ProductDef {
    code: "motionbuilder",
    name: "MotionBuilder",
    rate_milli: 0,
    versions: V_YEARLY,
};

/// Team slugs (ids are `team-<slug>`; past the list, `team-<n>`).
pub const TEAMS: &[(&str, &str)] = &[
    ("acme", "Acme Design"),
    ("globex", "Globex Engineering"),
    ("initech", "Initech Studios"),
    ("umbrella", "Umbrella Infrastructure"),
    ("hooli", "Hooli Architecture"),
    ("stark", "Stark Manufacturing"),
    ("wayne", "Wayne Civil Works"),
    ("wonka", "Wonka Product Design"),
    ("tyrell", "Tyrell Visualization"),
    ("cyberdyne", "Cyberdyne Systems"),
    ("soylent", "Soylent Plants"),
    ("vandelay", "Vandelay Industries"),
];

/// Groups of every team: (suffix, display name).
pub const GROUPS: &[(&str, &str)] = &[
    ("design", "Designers"),
    ("eng", "Engineering"),
    ("viz", "Visualization"),
];

pub const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "John",
    "Katherine",
    "Linus",
    "Margaret",
    "Niklaus",
    "Radia",
    "Tim",
    "Hedy",
    "Ken",
    "Dennis",
    "Sophie",
    "Claude",
    "Mary",
    "Anita",
    "Bjarne",
    "Guido",
    "Yukihiro",
    "Zoë",
    "José",
    "Łukasz",
    "Ngozi",
    "Søren",
    "Aiko",
];

pub const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Backus",
    "Johnson",
    "Torvalds",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Thompson",
    "Ritchie",
    "Wilson",
    "Shannon",
    "Keller",
    "Borg",
    "Stroustrup",
    "van Rossum",
    "Matsumoto",
    "O'Brien",
    "Müller",
    "Nowak",
    "Okafor",
    "Kierkegaard",
    "Tanaka",
];

/// Hostile but valid strings: SQL metacharacters, control characters,
/// markup, format strings, right-to-left overrides, astral characters. Each
/// is at most 256 characters and non-empty, so an event carrying one in
/// `product_version` or `machine_id` is valid and counted normally.
pub const HOSTILE: &[&str] = &[
    "'; DROP TABLE authorizations; --",
    "Robert'); DROP TABLE teams;--",
    "1' OR '1'='1",
    "\" OR \"\"=\"",
    "\\'\\\"\\\\",
    "ctl:\u{0}\u{1}\u{7}\u{8}\t\n\r\u{1b}[31m\u{7f}",
    "<script>alert('x')</script>",
    "%s%s%s%n%x",
    "{{7*7}}${7*7}",
    "\u{202e}evil\u{202c}",
    "emoji \u{1F4A9}\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
    "tab\tseparated\tvalue",
    "line1\nline2\r\nline3",
    "'\u{0}'",
    "NULL",
    "\\N",
    "`backticks` and $dollars",
];

/// Hostile but valid names (display names may be anything up to 256 characters).
pub const HOSTILE_NAMES: &[&str] = &[
    "Robert'); DROP TABLE users;--",
    "=cmd|' /C calc'!A0",
    "+SUM(1+1)*cmd|' /C calc'!A0",
    "@evil",
    "<img src=x onerror=alert(1)>",
    "",
];
