/**
 * Directory handles: the directories of DST that the SafeWriter has verified, each
 * held as an open descriptor, so that every later write into DST is made relative
 * to the very directory that was checked, never through a path that someone who can
 * write inside DST could have redirected since (issue #11).
 *
 * Why: checking each component with lstat and then writing by path leaves a window.
 * Between the check and the write, a local user (or any concurrent process) who can
 * write inside DST renames a checked directory away and puts a symlink to
 * `/etc` in its place; the path-based write then follows it and lands outside DST.
 * Node has no openat(). But on Linux `/proc/self/fd/N` names the object descriptor N
 * holds: the kernel resolves it to that directory itself (not by any name), so
 * `/proc/self/fd/N/name` is `name` looked up inside that directory, wherever it now
 * is: openat(N, "name") in a path. Every operation of the writer (create, rename,
 * unlink, rmdir, mkdir, symlink, lstat, readlink, readdir, chmod, utimes) takes such
 * a path, so a swapped parent cannot redirect it.
 *
 * How a directory is opened: through its parent's handle and its name, with
 * O_PATH | O_DIRECTORY | O_NOFOLLOW. O_NOFOLLOW applies to the last component, the
 * name: a symlink there is not followed (with O_PATH it is opened as the link and
 * O_DIRECTORY refuses it: ENOTDIR), a file is refused too. O_PATH opens without
 * needing read permission on the directory (an existing DST directory of mode 0300
 * still works) and is what the *at() calls of the native copier need. Chains start
 * at DST's own descriptor, opened once (DST itself may be a symlink to a directory:
 * the user's choice, as before). (O_NOFOLLOW on a bare `/proc/self/fd/N`, with no
 * name after it, would refuse the magic link itself: ELOOP. It is never needed.)
 *
 * Metadata of a directory itself (mode, times) is set through `/proc/self/fd/N`
 * (chmod/utimes follow the magic link to the inode; an O_PATH descriptor refuses
 * fchmod/futimens).
 *
 * Bounded: a tree may have 100,000 directories, and descriptors are a limited
 * resource. At most `maxIdle` handles stay open while unused (least recently used
 * are closed first); a handle in use is pinned and never closed under its user.
 * A closed handle is re-opened on its next use through its parent's (re-opened
 * likewise, up to DST's), and its device and inode must be those it had when first
 * verified: a directory replaced meanwhile (renamed away, a symlink or another
 * directory put in its place) is FERRY_E_PATH, never written through.
 *
 * A path from `path()`/`at()` is valid while the handle is pinned, or until the next
 * call of this module when it is not (an unpinned handle may be closed, and its
 * number reused, by the next open). So: compute it right before a synchronous call,
 * or pin across an asynchronous one.
 *
 * Requires /proc (checked at open; see SECURITY.md): without it there is no way to
 * name a descriptor in a path, and ferry refuses to write (FERRY_E_UNSUPPORTED)
 * rather than fall back to racy path checks.
 *
 *   const h = DirHandles.open(absRoot);          // throws system errors / FERRY_E_UNSUPPORTED
 *   const { node, st } = h.openChild(h.root, 'a'); // throws errno errors (ENOENT, ENOTDIR)
 *   h.pin(node); fs.openSync(h.at(node, 'x'), ...); h.unpin(node);
 *   h.close();
 */
import { closeSync, constants as C, fstatSync, openSync, statSync, type BigIntStats } from 'node:fs';
import { ErrorCodes, FerryError } from '../core/errors.js';

/** Linux's O_PATH (Node does not export it; the same value on every Linux architecture Node runs on). */
export const O_PATH = 0o10000000;
const DIR_FLAGS = O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW;
/** Open handles kept while unused. */
export const MAX_IDLE_DIR_HANDLES = 256;

export class DirNode {
  readonly rel: string;
  readonly name: string;
  readonly parent: DirNode | null;
  readonly dev: bigint;
  readonly ino: bigint;
  /** -1 while closed. */
  fd: number;
  pins = 0;
  children: Map<string, DirNode> | null = null;

  constructor(rel: string, name: string, parent: DirNode | null, fd: number, st: BigIntStats) {
    this.rel = rel;
    this.name = name;
    this.parent = parent;
    this.fd = fd;
    this.dev = st.dev;
    this.ino = st.ino;
  }
}

/** Does `/proc/self/fd/<fd>` reach the object `fd` holds (`st`)? */
function procNames(fd: number, st: BigIntStats): boolean {
  try {
    const via = statSync(`/proc/self/fd/${fd}`, { bigint: true });
    return via.dev === st.dev && via.ino === st.ino;
  } catch {
    return false;
  }
}

function noProc(subject: string): FerryError {
  return new FerryError(
    ErrorCodes.UNSUPPORTED,
    `${subject}: /proc is not mounted: ferry writes into the destination only through verified directory descriptors named in /proc/self/fd (no path-based fallback a local user could race); mount /proc`,
    { subject },
  );
}

function replaced(rel: string, why: string): FerryError {
  return new FerryError(ErrorCodes.PATH, `${rel}: ${why} during the transfer; refusing to write through it`, { subject: rel });
}

export class DirHandles {
  readonly root: DirNode;
  readonly #nodes = new Map<string, DirNode>();
  /** Open, unpinned handles; iteration order is least recently used first. */
  readonly #idle = new Set<DirNode>();
  readonly #maxIdle: number;
  #closed = false;

  private constructor(root: DirNode, maxIdle: number) {
    this.root = root;
    this.#maxIdle = maxIdle;
    root.pins = 1; // never closed before close()
    this.#nodes.set('', root);
  }

  /** Open DST (following a symlink at DST itself) and check that /proc/self/fd names it. */
  static open(absRoot: string, maxIdle = MAX_IDLE_DIR_HANDLES): DirHandles {
    const fd = openSync(absRoot, O_PATH | C.O_DIRECTORY);
    try {
      const st = fstatSync(fd, { bigint: true });
      if (!procNames(fd, st)) throw noProc(absRoot);
      return new DirHandles(new DirNode('', '', null, fd, st), maxIdle);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Throw FERRY_E_UNSUPPORTED (naming `subject`) unless /proc/self/fd names open descriptors. */
  static requireProc(subject: string): void {
    const fd = openSync('/', O_PATH | C.O_DIRECTORY);
    try {
      if (!procNames(fd, fstatSync(fd, { bigint: true }))) throw noProc(subject);
    } finally {
      closeSync(fd);
    }
  }

  /** The verified handle of `rel`, if it has one (open or not). */
  get(rel: string): DirNode | undefined {
    return this.#nodes.get(rel);
  }

  /**
   * Open `name` inside `parent` as a verified directory and remember it. Throws the
   * system error as it is: ENOENT (missing), ENOTDIR (a symlink or a non-directory
   * there). Returns its fstat too.
   */
  openChild(parent: DirNode, name: string): { node: DirNode; st: BigIntStats } {
    this.pin(parent);
    let fd: number;
    try {
      fd = openSync(`/proc/self/fd/${parent.fd}/${name}`, DIR_FLAGS);
    } finally {
      this.unpin(parent);
    }
    let st: BigIntStats;
    try {
      st = fstatSync(fd, { bigint: true });
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    const rel = parent.rel === '' ? name : `${parent.rel}/${name}`;
    const old = this.#nodes.get(rel);
    if (old) this.forget(old);
    const node = new DirNode(rel, name, parent, fd, st);
    this.#nodes.set(rel, node);
    (parent.children ??= new Map()).set(name, node);
    this.#idle.add(node);
    this.#trim();
    return { node, st };
  }

  /** Drop `node` and everything below it (removed from DST, or replaced). */
  forget(node: DirNode): void {
    if (node === this.root) return;
    for (const c of node.children?.values() ?? []) this.forget(c);
    if (this.#nodes.get(node.rel) === node) this.#nodes.delete(node.rel);
    if (node.parent?.children?.get(node.name) === node) node.parent.children.delete(node.name);
    this.#idle.delete(node);
    if (node.fd >= 0 && node.pins === 0) {
      closeSync(node.fd);
      node.fd = -1;
    }
  }

  /** Keep `node` open until unpin (re-opening and re-verifying it if it was closed). */
  pin(node: DirNode): void {
    this.#ensure(node);
    if (node.pins++ === 0) this.#idle.delete(node);
  }

  unpin(node: DirNode): void {
    if (--node.pins > 0) return;
    if (node.fd < 0) return;
    if (this.#closed || this.#nodes.get(node.rel) !== node) {
      // closed or forgotten while pinned
      closeSync(node.fd);
      node.fd = -1;
      return;
    }
    this.#idle.add(node);
    this.#trim();
  }

  /** `/proc/self/fd/N` of the directory (see the essay for how long it is valid). */
  path(node: DirNode): string {
    this.#ensure(node);
    if (node.pins === 0) {
      this.#idle.delete(node);
      this.#idle.add(node);
    }
    return `/proc/self/fd/${node.fd}`;
  }

  /** `/proc/self/fd/N/name`: `name` inside the directory. */
  at(node: DirNode, name: string): string {
    return `${this.path(node)}/${name}`;
  }

  /** Close every handle. Later use throws. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const n of this.#nodes.values()) {
      if (n.fd >= 0 && (n.pins === 0 || n === this.root)) {
        closeSync(n.fd);
        n.fd = -1;
      }
    }
    this.#idle.clear();
  }

  #ensure(node: DirNode): void {
    if (node.fd >= 0) return;
    if (this.#closed) throw new FerryError(ErrorCodes.INTERRUPTED, `${node.rel || '.'}: the session is over; nothing more is written`, { subject: node.rel });
    const parent = node.parent;
    if (parent === null || this.#nodes.get(node.rel) !== node) throw replaced(node.rel, 'directory was removed');
    this.pin(parent);
    let fd: number;
    try {
      fd = openSync(`/proc/self/fd/${parent.fd}/${node.name}`, DIR_FLAGS);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') throw replaced(node.rel, 'directory was removed or replaced');
      throw e;
    } finally {
      this.unpin(parent);
    }
    const st = fstatSync(fd, { bigint: true });
    if (st.dev !== node.dev || st.ino !== node.ino) {
      closeSync(fd);
      throw replaced(node.rel, 'directory was replaced by another one');
    }
    node.fd = fd;
    if (node.pins === 0) {
      this.#idle.add(node);
      this.#trim();
    }
  }

  #trim(): void {
    while (this.#idle.size > this.#maxIdle) {
      const victim = this.#idle.values().next().value as DirNode;
      this.#idle.delete(victim);
      closeSync(victim.fd);
      victim.fd = -1;
    }
  }
}
