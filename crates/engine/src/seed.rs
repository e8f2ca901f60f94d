use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is used for; each purpose gets an independent stream.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// Initial weights.
    Init = 1,
    /// The order of training samples in an epoch.
    Shuffle = 2,
    /// Dropout masks in an epoch.
    Dropout = 3,
    /// Random crops and flips of training images in an epoch.
    Augment = 4,
}

/// A generator for one job seed, purpose and epoch. Streams depend only on these three values,
/// so a job resumed at epoch k draws exactly what an uninterrupted run would have.
pub(crate) fn rng(seed: u64, purpose: Purpose, epoch: u64) -> ChaCha8Rng {
    let mixed =
        splitmix64(splitmix64(seed ^ (purpose as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ epoch);
    ChaCha8Rng::seed_from_u64(mixed)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
