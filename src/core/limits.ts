/**
 * Caps on everything a peer (or a hostile tree) controls. Each one is checked
 * before memory is allocated or a path is used. Numbers chosen generously for real
 * datasets and far below what would hurt the machine.
 */

/** Longest relative path, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest single path component, in UTF-8 bytes (NAME_MAX). */
export const MAX_NAME_BYTES = 255;
/** Deepest directory nesting accepted. */
export const MAX_PATH_DEPTH = 256;
/** Longest symlink target accepted, in bytes. */
export const MAX_LINK_TARGET_BYTES = 4096;
/** Largest single file accepted from a peer: 16 TiB. */
export const MAX_FILE_SIZE = 2 ** 44;

/**
 * Manifest entries one receiving session accepts (files, directories and links
 * together). The receiver keeps every entry of the manifest for the session's life
 * (a few hundred bytes each), so a sender announcing tens of millions would exhaust
 * the heap; past this count the session fails with FERRY_E_LIMIT. `ferry recv
 * --max-entries N` raises it (the wire format's own cap is 50 million).
 */
export const MAX_SESSION_ENTRIES = 4_000_000;

/**
 * Bytes of holes (zeros the sender skipped in sparse files) one receiving session
 * hashes: 1 TiB, minutes of CPU on one core. A hole costs the sender a
 * few bytes and the receiver real hashing work, so it is capped per session
 * (FERRY_E_LIMIT past it; `ferry recv --max-hole-bytes N` raises it). The work itself
 * is done in slices that yield to the event loop, never in one block.
 */
export const MAX_SESSION_HOLE_BYTES = 2 ** 40;

/**
 * A receiving session fails with FERRY_E_TIMEOUT when, while files are outstanding,
 * no frame arrives and no write, commit or hashing completes for this long (ms). It
 * catches a sender that opens ranges and never ends them, which the channel's own
 * idle timer cannot see while the receiver waits for a free file slot.
 */
export const SESSION_IDLE_TIMEOUT_MS = 120_000;

/**
 * Extended attributes from a peer (-X/-A), checked by the manifest decoder before
 * anything is allocated: a name is at most XATTR_NAME_MAX (255) bytes and a value
 * XATTR_SIZE_MAX (64 KiB), Linux's own limits; an entry carries at most
 * MAX_XATTRS_PER_ENTRY attributes and MAX_XATTR_BYTES_PER_ENTRY bytes of names and
 * values (ext4 keeps about one block per inode, so real entries are far smaller);
 * and a receiving session keeps at most MAX_SESSION_XATTR_BYTES of them in its
 * manifest (FERRY_E_LIMIT past it).
 */
export const MAX_XATTR_NAME_BYTES = 255;
export const MAX_XATTR_VALUE_BYTES = 64 * 1024;
export const MAX_XATTRS_PER_ENTRY = 128;

/**
 * Owner names (--names, fs/owner-names.ts): 1..MAX_OWNER_NAME_BYTES bytes of
 * [A-Za-z0-9._-] with an optional trailing "$"; at most MAX_OWNER_NAMES distinct names
 * (users and groups together) per session.
 */
export const MAX_OWNER_NAME_BYTES = 32;
export const MAX_OWNER_NAMES = 4096;
const OWNER_NAME_RE = /^[A-Za-z0-9._-]+\$?$/;

/** Whether `s` may travel as an owner name. */
export function validOwnerName(s: string): boolean {
  return s.length >= 1 && s.length <= MAX_OWNER_NAME_BYTES && OWNER_NAME_RE.test(s);
}
export const MAX_XATTR_BYTES_PER_ENTRY = 256 * 1024;
export const MAX_SESSION_XATTR_BYTES = 256 * 1024 * 1024;
