//! User and group names for display: the system's NSS (getpwuid_r and
//! getgrgid_r through nix, so files, LDAP, SSSD and systemd alike), no fork.

/// The name NSS gives `uid`, or None when no source knows the id.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The name NSS gives `gid`, or None when no source knows the id.
pub fn group_name(gid: u32) -> Option<String> {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}
