//! Summaries of measured values (latencies, rates, memory).

/// The nearest-rank percentile of `sorted` (ascending): `percent` is in
/// 0..=100 (the p99 is `percentile(&v, 99.0)`). 0 when empty.
pub fn percentile(sorted: &[f64], percent: f64) -> f64 {
    debug_assert!(
        (0.0..=100.0).contains(&percent),
        "a percentile is 0..=100, not {percent}"
    );
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the upper one of an even count); 0 when empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[3.0, 7.0], 50.0), 3.0);
    }

    #[test]
    fn median_of_even_count_is_the_upper() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(vec![2.0, 1.0, 3.0]), 2.0);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
