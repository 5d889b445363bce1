//! Order statistics over a handful of samples: the median every table
//! reports, quantiles, and the spread (slowest over fastest) used by the
//! flatness target.

/// The median of `values` (the mean of the middle two for an even count).
///
/// # Panics
/// Panics if `values` is empty.
pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// The `q`-quantile of `values` (`0.0 ..= 1.0`), linearly interpolated
/// between the two nearest order statistics (type 7, as R and numpy's
/// default), so `quantile(v, 0.5)` is the usual median.
///
/// # Panics
/// Panics if `values` is empty or `q` is outside `0.0 ..= 1.0`.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    assert!(!values.is_empty(), "quantile of nothing");
    assert!((0.0..=1.0).contains(&q), "quantile {q} out of range");
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Largest over smallest of `values` (1.0 for one value).
///
/// # Panics
/// Panics if `values` is empty or holds a value that is not positive.
pub fn spread(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "spread of nothing");
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    assert!(min > 0.0, "spread of non-positive values");
    max / min
}

/// Median over rounds of `num[r] / den[r]` (per-round ratios, which cancel
/// the drift a shared VM puts into both).
///
/// # Panics
/// Panics if the slices are empty or of different lengths.
pub fn median_ratio(num: &[f64], den: &[f64]) -> f64 {
    assert_eq!(num.len(), den.len(), "ratio of unequal round counts");
    let r: Vec<f64> = num.iter().zip(den).map(|(a, b)| a / b).collect();
    median(&r)
}

#[cfg(test)]
mod tests {
    use super::{median, median_ratio, quantile, spread};

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 101.0);
        assert_eq!(quantile(&v, 0.99), 100.0);
        assert!((quantile(&[1.0, 2.0], 0.25) - 1.25).abs() < 1e-12);
    }

    #[test]
    fn spreads_and_ratios() {
        assert_eq!(spread(&[2.0, 3.0, 1.5]), 2.0);
        assert_eq!(spread(&[5.0]), 1.0);
        assert_eq!(median_ratio(&[2.0, 6.0, 3.0], &[1.0, 2.0, 3.0]), 2.0);
    }

    #[test]
    #[should_panic(expected = "quantile of nothing")]
    fn empty_panics() {
        median(&[]);
    }
}
