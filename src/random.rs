//! Randomness, always straight from the operating system.

/// `N` bytes from the OS's random source.
///
/// # Panics
/// Only when the OS cannot supply randomness at all; nothing secure can be done then.
pub fn os_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap_or_else(|e| panic!("the OS random source failed: {e}"));
    b
}
