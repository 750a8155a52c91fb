//! The few distributions the simulator needs, over `rand`'s seeded `StdRng` (ChaCha12 in rand
//! 0.8: the same seed gives the same random stream everywhere; the float transforms use `ln`,
//! `exp`, `sin` from the platform's libm, so byte-identical output is promised per platform).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) type SimRng = StdRng;

pub(crate) fn rng_from(seed: u64) -> SimRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform in [0, 1).
pub(crate) fn unit(rng: &mut SimRng) -> f64 {
    rng.gen::<f64>()
}

/// Standard normal (Box-Muller; one of the pair is dropped to keep the state simple).
pub(crate) fn normal(rng: &mut SimRng) -> f64 {
    let u1 = 1.0 - unit(rng); // (0, 1]
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Exponential with mean 1.
pub(crate) fn exp1(rng: &mut SimRng) -> f64 {
    -(1.0 - unit(rng)).ln()
}

/// Log-normal with the given median and shape.
pub(crate) fn lognormal(rng: &mut SimRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Poisson count: exact (Knuth) for small means, normal approximation above 30.
pub(crate) fn poisson(rng: &mut SimRng, mean: f64) -> u64 {
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    if mean < 30.0 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = unit(rng);
        while p > limit {
            k += 1;
            p *= unit(rng);
        }
        k
    } else {
        (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u64
    }
}

/// Uniform in `lo..hi` (floats).
pub(crate) fn between(rng: &mut SimRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(rng)
}

pub(crate) fn pick<T: Copy>(rng: &mut SimRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

/// Index into cumulative weights (the last one is the total).
pub(crate) fn pick_weighted(rng: &mut SimRng, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = unit(rng) * total;
    cumulative
        .iter()
        .position(|&c| x < c)
        .unwrap_or(cumulative.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_mean_is_right_on_both_branches() {
        let mut rng = rng_from(7);
        for mean in [0.3, 2.0, 12.0, 45.0, 600.0] {
            let n = 20_000;
            let total: u64 = (0..n).map(|_| poisson(&mut rng, mean)).sum();
            let got = total as f64 / n as f64;
            assert!((got - mean).abs() < 0.03 * mean + 0.02, "{mean}: {got}");
        }
        assert_eq!(poisson(&mut rng, 0.0), 0);
        assert_eq!(poisson(&mut rng, f64::NAN), 0);
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let mut rng = rng_from(3);
        let cum = [1.0, 4.0];
        let ones = (0..10_000)
            .filter(|_| pick_weighted(&mut rng, &cum) == 1)
            .count();
        assert!((7_200..7_800).contains(&ones), "{ones}");
    }
}
