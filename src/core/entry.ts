/**
 * The manifest entry: what the tree walker (fs/walk) produces, what the sender puts
 * on the wire (wire/ encodes it), and what the safe writer (fs/) publishes.
 *
 * Paths are relative to the transfer root, '/'-separated, and already validated by
 * fs/path-safety before they get here. Times are integer nanoseconds (bigint) so
 * that mtimes round-trip exactly; rsync's quick check compares them at the precision
 * both filesystems keep.
 */

export type EntryKind = 'file' | 'dir' | 'symlink' | 'hardlink';

export interface Entry {
  /** Relative path, '/'-separated; '' never appears (the root is implicit). */
  path: string;
  kind: EntryKind;
  /** Bytes, for files; 0 for the other kinds. */
  size: number;
  /** Permission bits (0o7777 mask; setuid/setgid/sticky are stripped by the writer unless asked). */
  mode: number;
  /** Modification time, nanoseconds since the epoch. */
  mtimeNs: bigint;
  /** symlink: the link's target, verbatim. hardlink: the relative path of the first link, already sent. */
  target?: string;
  /** Numeric owner and group (the walk's lstat); applied only when the writer is asked to keep owners. */
  uid?: number;
  gid?: number;
  /** Extended attributes (-X/-A; fs/xattrs), sorted by name; undefined when not asked for. */
  xattrs?: Array<[string, Buffer]>;
}

/** An entry as the local walker sees it: plus where it is on disk. */
export interface SourceEntry extends Entry {
  /** Absolute path on the source filesystem. */
  absPath: string;
  /**
   * Inode number and device, from the walk's lstat (made through a checked
   * descriptor of the parent directory, fs/walk): hard-link detection, inode-ordered
   * reads, and the identity every reader requires of the file it opens
   * (fs/source-file), so that a path swapped after the walk reads nothing else.
   */
  ino: bigint;
  dev: bigint;
  /** Number of hard links to the inode. */
  nlink: number;
  /** Allocated bytes (st_blocks * 512): less than size means sparse. */
  allocated: number;
  /**
   * The local copy's quick check, gathered by the walk: the lstat of the same path in
   * the destination, made in the same native call that listed the source directory
   * (fs/walk `peer`). Regular files only; undefined when nobody looked.
   */
  peer?: PeerStat;
}

/** An lstat of a destination entry (errno 0: found, then the rest is set; else only errno). */
export interface PeerStat {
  errno: number;
  /** st_mode, type bits included. */
  mode: number;
  size: number;
  mtimeNs: bigint;
  uid: number;
  gid: number;
}
