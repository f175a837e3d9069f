//! Helpers shared by every integration module. The general ones (running a
//! plugin binary, configurations, store snapshots, `Rng`, `skip`) live in the
//! `test-support` crate and are re-exported here, so modules keep writing
//! `common::...`; what is specific to this test binary follows.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use test_support::*;

/// Our plugin, built by cargo for this test run.
pub fn our_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_host-local"))
}

/// Network `name` with `ipam` in `data`, run by our plugin (cniVersion 1.1.0).
pub fn our_net(name: &str, data: &Path, ipam: serde_json::Value) -> Net {
    Net::new(our_bin(), name, data, ipam)
}

/// A mount made by a test (tmpfs or a bind mount), detached on drop, also
/// when the test panics. Needs root (CAP_SYS_ADMIN).
pub struct MountGuard {
    pub path: PathBuf,
}

fn cstr(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn check_mount(rc: libc::c_int, what: &str) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

impl MountGuard {
    /// Mounts a tmpfs at `path` with `opts` (e.g. "size=64k,mode=0755").
    pub fn tmpfs(path: &Path, opts: &str) -> std::io::Result<MountGuard> {
        let (src, fs, target) = (c"tmpfs", c"tmpfs", cstr(path));
        let data = std::ffi::CString::new(opts).unwrap();
        // SAFETY: every pointer is a valid NUL-terminated string.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        check_mount(rc, &format!("mount tmpfs on {}", path.display()))?;
        Ok(MountGuard {
            path: path.to_path_buf(),
        })
    }

    /// Bind-mounts `src` on `path`, read-only.
    pub fn bind_ro(src: &Path, path: &Path) -> std::io::Result<MountGuard> {
        let (s, t) = (cstr(src), cstr(path));
        // SAFETY: valid strings; null fstype and data are allowed for MS_BIND.
        let rc = unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        check_mount(rc, &format!("bind {} on {}", src.display(), path.display()))?;
        let g = MountGuard {
            path: path.to_path_buf(),
        };
        // SAFETY: as above; remounting the bind read-only.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                std::ptr::null(),
            )
        };
        check_mount(rc, &format!("remount {} read-only", path.display()))?;
        Ok(g)
    }

    /// Remounts this tmpfs read-only (`mount -o remount,ro`).
    pub fn remount_ro(&self) -> std::io::Result<()> {
        let t = cstr(&self.path);
        // SAFETY: valid string; null source and data are allowed for MS_REMOUNT.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            )
        };
        check_mount(rc, &format!("remount {} read-only", self.path.display()))
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let t = cstr(&self.path);
        // SAFETY: valid string. MNT_DETACH so a stray open descriptor cannot keep it.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Runs `f(i)` for every i in `0..n` on threads started together.
pub fn all_at_once<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (f, b) = (&f, &barrier);
                s.spawn(move || {
                    b.wait();
                    f(i)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// True when mounts can be made here (root with CAP_SYS_ADMIN). Otherwise
/// a loud skip, or a panic under IPAM_REQUIRE_ALL=1.
pub fn can_mount_or_skip(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip(what, "needs root to mount a tmpfs / read-only bind");
    }
    let probe = tempfile::tempdir().unwrap();
    match MountGuard::tmpfs(probe.path(), "size=4k") {
        Ok(_g) => true,
        Err(e) => skip(what, &format!("cannot mount ({e})")),
    }
}

#[test]
fn reference_lookup_refuses_a_binary_answering_like_ours() {
    let err = check_is_reference(&our_bin()).expect_err("our plugin passed as the reference");
    assert!(err.contains("like OUR plugin"), "{err}");
    if let Some(refb) = ref_bin_or_skip("reference_lookup_refuses_a_binary_answering_like_ours") {
        check_is_reference(&refb).unwrap();
    }
}
