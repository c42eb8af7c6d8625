//! Deterministic randomness: a ChaCha8 RNG per purpose (plan, day, publish,
//! world, ids) seeded from the scenario seed and the purpose's keys, and the
//! distributions the generator draws from.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::HOUR;

pub(super) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(super) fn mix(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x5eed_u64, |acc, &p| splitmix(acc ^ splitmix(p)))
}

pub(super) const PURPOSE_PLAN: u64 = 1;
pub(super) const PURPOSE_DAY: u64 = 2;
pub(super) const PURPOSE_PUBLISH: u64 = 3;
pub(super) const PURPOSE_WORLD: u64 = 4;
pub(super) const PURPOSE_IDS: u64 = 5;

pub(super) fn rng(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(parts))
}

/// Poisson(mean): Knuth below 30, a normal approximation above.
pub(super) fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean < 30.0 {
        let limit = (-mean).exp();
        let mut k = 0u32;
        let mut p = 1.0;
        loop {
            p *= rng.random::<f64>();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (mean + mean.sqrt() * z).round().max(0.0) as u32
}

/// Index in `0..n` with weight `1 / (i + 1)` (popular first).
pub(super) fn zipf(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let total: f64 = (0..n).map(|i| 1.0 / (i as f64 + 1.0)).sum();
    let mut x = rng.random::<f64>() * total;
    for i in 0..n {
        x -= 1.0 / (i as f64 + 1.0);
        if x < 0.0 {
            return i;
        }
    }
    n.saturating_sub(1)
}

/// Microseconds into a day: mostly office hours (UTC), some at any hour.
pub(super) fn time_of_day(rng: &mut ChaCha8Rng) -> i64 {
    const OFFICE: [u32; 12] = [1, 3, 6, 8, 7, 4, 6, 8, 7, 5, 3, 2]; // 07:00 .. 18:59
    let hour = if rng.random_bool(0.85) {
        let total: u32 = OFFICE.iter().sum();
        let mut x = rng.random_range(0..total);
        let mut h = 7;
        for (i, w) in OFFICE.iter().enumerate() {
            if x < *w {
                h = 7 + i as i64;
                break;
            }
            x -= w;
        }
        h
    } else {
        rng.random_range(0..24)
    };
    hour * HOUR + rng.random_range(0..3_600_000) * 1_000
}
