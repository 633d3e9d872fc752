//! Where downloads and extracted packages are kept between runs.
//!
//! The cache lives outside the repository because CI runs in a fresh
//! clone on the same machine and should reuse what a developer fetched.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The cache's subdirectory of the Kubernetes build (the kubelet and the
/// test control plane's binaries: minutes of Go compiling).
pub const KUBERNETES_BUILD: &str = "kubernetes-build";
/// The cache's subdirectory of the built kiOS kernels (minutes each).
pub const KERNEL_BUILD: &str = "kernel-build";

/// What `cargo kios clean --keep-builds` keeps: the builds that take
/// minutes to redo. Everything else is a download or an unpacked copy.
pub const EXPENSIVE_BUILDS: &[&str] = &[KUBERNETES_BUILD, KERNEL_BUILD];

/// `$KIOS_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/kios`; may not exist yet.
pub fn cache_location() -> Result<PathBuf> {
    cache_dir_from(
        std::env::var_os("KIOS_CACHE").map(PathBuf::from),
        std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// [`cache_location`], created if missing.
pub fn cache_dir() -> Result<PathBuf> {
    let dir = cache_location()?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the cache directory {}", dir.display()))?;
    Ok(dir)
}

/// A subdirectory of the cache, created if missing.
pub fn cache_subdir(name: &str) -> Result<PathBuf> {
    let dir = cache_dir()?.join(name);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the cache directory {}", dir.display()))?;
    Ok(dir)
}

fn cache_dir_from(
    kios_cache: Option<PathBuf>,
    xdg_cache_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf> {
    // Empty values count as unset, as the XDG spec asks.
    let non_empty = |path: Option<PathBuf>| path.filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = non_empty(kios_cache) {
        return Ok(dir);
    }
    if let Some(xdg) = non_empty(xdg_cache_home) {
        return Ok(xdg.join("kios"));
    }
    match non_empty(home) {
        Some(home) => Ok(home.join(".cache").join("kios")),
        None => bail!("cannot choose a cache directory: set KIOS_CACHE or HOME"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(path: &str) -> Option<PathBuf> {
        Some(PathBuf::from(path))
    }

    #[test]
    fn kios_cache_wins() {
        let dir = cache_dir_from(some("/c"), some("/x"), some("/h")).unwrap();
        assert_eq!(dir, PathBuf::from("/c"));
    }

    #[test]
    fn xdg_cache_home_is_next() {
        let dir = cache_dir_from(None, some("/x"), some("/h")).unwrap();
        assert_eq!(dir, PathBuf::from("/x/kios"));
    }

    #[test]
    fn home_is_the_fallback_and_empty_values_are_unset() {
        let dir = cache_dir_from(some(""), some(""), some("/h")).unwrap();
        assert_eq!(dir, PathBuf::from("/h/.cache/kios"));
        assert!(cache_dir_from(None, None, None).is_err());
    }
}
