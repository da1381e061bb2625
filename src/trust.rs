//! Which checkouts deploy-lock may read settings from and run deploy.sh out
//! of: git's safe.directory rule applied to the search for `deploy/`.
//!
//! A checkout decides what runs as the caller (its deploy.sh) and where the
//! etcd password goes (its deploy-lock.env), so one planted by another user
//! (`/tmp/deploy/scripts/deploy.sh`, git's CVE-2022-24765 pattern) must not be
//! picked up. Trusted owners are the caller and root; under sudo (the caller
//! is root and `SUDO_UID` is set) also the user who ran sudo, as git does, so
//! `sudo deploy-lock unlock ENV` works in that user's checkout. Root trusts
//! nothing else by default: a checkout owned by another user could otherwise
//! run its deploy.sh as root. `DEPLOY_LOCK_SAFE_ROOTS` (a `:`-separated list
//! of checkouts, or `*` for any) overrides the rule for the folders named.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const ENV_SAFE_ROOTS: &str = "DEPLOY_LOCK_SAFE_ROOTS";

/// Who the caller trusts to own a checkout.
#[derive(Clone, Debug, PartialEq)]
pub struct Trust {
    /// The caller's effective uid.
    pub caller: u32,
    /// Owners trusted besides root: the caller, and under sudo the sudoer.
    owners: Vec<u32>,
    /// `DEPLOY_LOCK_SAFE_ROOTS`, each entry resolved (symlinks followed).
    safe_roots: Vec<PathBuf>,
    any: bool,
}

impl Trust {
    /// The rule for this process: its effective uid, `SUDO_UID` when root,
    /// and the `DEPLOY_LOCK_SAFE_ROOTS` value given.
    pub fn for_this_process(safe_roots: Option<&OsStr>) -> Trust {
        let caller = nix::unistd::geteuid().as_raw();
        let sudoer = (caller == 0)
            .then(|| std::env::var("SUDO_UID").ok()?.trim().parse::<u32>().ok())
            .flatten();
        Trust::new(caller, sudoer, safe_roots)
    }

    pub fn new(caller: u32, sudoer: Option<u32>, safe_roots: Option<&OsStr>) -> Trust {
        let mut owners = vec![caller];
        owners.extend(sudoer);
        let mut any = false;
        let mut roots = Vec::new();
        for entry in safe_roots
            .map(|v| std::env::split_paths(v).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if entry.as_os_str() == "*" {
                any = true;
            } else if !entry.as_os_str().is_empty() {
                roots.push(std::fs::canonicalize(&entry).unwrap_or(entry));
            }
        }
        Trust {
            caller,
            owners,
            safe_roots: roots,
            any,
        }
    }

    /// Root, the caller (or the sudoer) owns `uid`'s files.
    pub fn owner_trusted(&self, uid: u32) -> bool {
        uid == 0 || self.owners.contains(&uid)
    }

    /// `dir` is named in `DEPLOY_LOCK_SAFE_ROOTS` (or that is `*`).
    pub fn listed(&self, dir: &Path) -> bool {
        if self.any {
            return true;
        }
        if self.safe_roots.is_empty() {
            return false;
        }
        let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        self.safe_roots.contains(&real)
    }
}

/// Why a checkout is refused: the folder, and who owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct UntrustedCheckout {
    /// The checkout (project root).
    pub root: PathBuf,
    /// The folder whose owner is not trusted: the root or its `deploy/`.
    pub folder: PathBuf,
    pub owner_uid: u32,
    pub owner: Option<String>,
    pub caller_uid: u32,
}

impl fmt::Display for UntrustedCheckout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner = match &self.owner {
            Some(n) => format!("{n} (uid {})", self.owner_uid),
            None => format!("uid {}", self.owner_uid),
        };
        let me = crate::accounts::user_name(self.caller_uid)
            .unwrap_or_else(|| format!("uid {}", self.caller_uid));
        write!(
            f,
            "refusing the checkout {}: {} is owned by {owner}, not by you ({me}) or root, and \
             its deploy.sh and settings would act as you; if you trust it, add it to \
             {ENV_SAFE_ROOTS} (e.g. {ENV_SAFE_ROOTS}={})",
            self.root.display(),
            self.folder.display(),
            self.root.display()
        )
    }
}

impl std::error::Error for UntrustedCheckout {}

/// A folder that holds what a checkout is recognised by.
pub fn looks_like_checkout(dir: &Path) -> bool {
    dir.join("deploy/scripts").is_dir() || dir.join("deploy/config").is_dir()
}

/// Checks a checkout found or named: it and its `deploy/` folder must be
/// owned by a trusted owner, unless it is listed in `DEPLOY_LOCK_SAFE_ROOTS`.
pub fn check_checkout(root: &Path, trust: &Trust) -> Result<(), UntrustedCheckout> {
    if trust.listed(root) {
        return Ok(());
    }
    for folder in [root.to_path_buf(), root.join("deploy")] {
        let Ok(meta) = std::fs::metadata(&folder) else {
            continue;
        };
        if !trust.owner_trusted(meta.uid()) {
            return Err(UntrustedCheckout {
                root: root.to_path_buf(),
                folder,
                owner_uid: meta.uid(),
                owner: crate::accounts::user_name(meta.uid()),
                caller_uid: trust.caller,
            });
        }
    }
    Ok(())
}

/// Where the upward search ended without a checkout, when a folder that
/// looked like one was passed over because anyone could have put it there.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedCheckout {
    /// The world-writable folder holding a `deploy/` folder (e.g. `/tmp`).
    pub folder: PathBuf,
}

/// The result of the upward search.
#[derive(Debug, Clone, PartialEq)]
pub enum Search {
    Found(PathBuf),
    /// Nothing usable; `skipped` names a planted-looking `deploy/` passed over.
    NotFound {
        skipped: Option<SkippedCheckout>,
    },
}

/// The nearest ancestor of `start` (itself included) holding `deploy/scripts`
/// or `deploy/config`, stopping (unchecked) at a world-writable folder (such
/// as `/tmp`: anyone may create `deploy/` in it) and at a folder owned by
/// someone the caller does not trust. A folder listed in
/// `DEPLOY_LOCK_SAFE_ROOTS` is searched whatever its owner and mode. A
/// checkout in a folder owned by another user is refused, not passed over,
/// so the user learns why and how to trust it.
pub fn search_up(start: &Path, trust: &Trust) -> Result<Search, UntrustedCheckout> {
    for dir in start.ancestors() {
        let listed = trust.listed(dir);
        if !listed {
            let Ok(meta) = std::fs::metadata(dir) else {
                break;
            };
            if meta.mode() & 0o002 != 0 {
                let skipped = looks_like_checkout(dir).then(|| SkippedCheckout {
                    folder: dir.to_path_buf(),
                });
                return Ok(Search::NotFound { skipped });
            }
            if !trust.owner_trusted(meta.uid()) {
                if looks_like_checkout(dir) {
                    check_checkout(dir, trust)?;
                }
                return Ok(Search::NotFound { skipped: None });
            }
        }
        if looks_like_checkout(dir) {
            check_checkout(dir, trust)?;
            return Ok(Search::Found(dir.to_path_buf()));
        }
    }
    Ok(Search::NotFound { skipped: None })
}

/// `DEPLOY_LOCK_SAFE_ROOTS` as the environment has it.
pub fn safe_roots_var() -> Option<OsString> {
    std::env::var_os(ENV_SAFE_ROOTS).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn checkout(at: &Path) {
        std::fs::create_dir_all(at.join("deploy/scripts")).unwrap();
    }

    #[test]
    fn the_search_stops_at_a_world_writable_folder() {
        let t = tempfile::tempdir().unwrap();
        let shared = t.path().join("shared");
        checkout(&shared);
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let below = shared.join("a/b");
        std::fs::create_dir_all(&below).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let trust = Trust::new(me, None, None);
        assert_eq!(
            search_up(&below, &trust).unwrap(),
            Search::NotFound {
                skipped: Some(SkippedCheckout {
                    folder: shared.clone()
                })
            }
        );
        // Listed, it is trusted.
        let listed = Trust::new(me, None, Some(shared.as_os_str()));
        assert_eq!(
            search_up(&below, &listed).unwrap(),
            Search::Found(shared.clone())
        );
        // Our own checkout below it is found before the search gets there.
        checkout(&shared.join("a"));
        assert_eq!(
            search_up(&below, &trust).unwrap(),
            Search::Found(shared.join("a"))
        );
    }

    #[test]
    fn another_owner_is_refused_and_sudo_and_the_list_trust() {
        let t = tempfile::tempdir().unwrap();
        checkout(t.path());
        if nix::unistd::geteuid().is_root() {
            // Root's own files are trusted by everyone: give it to a user.
            for p in [t.path().to_path_buf(), t.path().join("deploy")] {
                std::os::unix::fs::chown(p, Some(54_999), None).unwrap();
            }
        }
        let owner = std::fs::metadata(t.path()).unwrap().uid();
        // A caller who is neither the owner nor root (uids only compared).
        let stranger = owner.wrapping_add(4242).max(1);
        let trust = Trust::new(stranger, None, None);
        let e = search_up(t.path(), &trust).unwrap_err();
        assert_eq!((e.root.as_path(), e.owner_uid), (t.path(), owner));
        assert!(
            e.to_string()
                .contains(&format!("{ENV_SAFE_ROOTS}={}", t.path().display())),
            "{e}"
        );
        assert!(check_checkout(t.path(), &trust).is_err());
        // The owner runs sudo: root then trusts the owner's checkout, and
        // only then.
        assert!(check_checkout(t.path(), &Trust::new(0, Some(owner), None)).is_ok());
        assert!(check_checkout(t.path(), &Trust::new(0, None, None)).is_err());
        let list: OsString = format!("/nonexistent:{}", t.path().display()).into();
        assert!(check_checkout(t.path(), &Trust::new(stranger, None, Some(&list))).is_ok());
        assert!(check_checkout(t.path(), &Trust::new(stranger, None, Some("*".as_ref()))).is_ok());
        assert!(check_checkout(t.path(), &Trust::new(owner, None, None)).is_ok());
    }
}
