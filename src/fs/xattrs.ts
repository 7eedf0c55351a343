/**
 * Extended attributes and POSIX ACLs (`-X/--xattrs`, `-A/--acls`), as rsync keeps them.
 *
 * Which names ferry reads, compares and writes (`XattrPolicy`, rsync's rules):
 * - `-X`: `user.*`; running as root also `trusted.*` and `security.*`;
 * - `-A`: the ACLs, which Linux stores as `system.posix_acl_access` and
 *   `system.posix_acl_default` (ferry copies the kernel's binary form as is);
 * - `security.capability` (file capabilities, a privilege like setuid) only with
 *   --preserve-special-bits, and other `system.*` names never.
 * A name outside the policy is neither copied nor removed in DST.
 *
 * An entry's attributes travel as `Xattrs`, pairs sorted by name, so that two lists
 * compare with one pass. Symlinks carry none (Linux refuses user.* on them).
 * The system calls are fs/meta-native's (the native addon): without it, asking for
 * -X/-A is FERRY_E_UNSUPPORTED.
 *
 * Sizes are capped (core/limits.ts) wherever a list comes from a peer
 * (wire/messages.ts checks them before allocating); local reads are bounded by the
 * kernel's own limits (64 KiB a value, 64 KiB of names).
 */
import { getXattr, listXattrs, removeXattr, setXattr } from './meta-native.js';

/** An entry's extended attributes: [name, value] pairs sorted by name. */
export type Xattrs = Array<[string, Buffer]>;

export interface XattrPolicy {
  /** -X: user.* (and trusted.*, security.* when `root`). */
  xattrs: boolean;
  /** -A: system.posix_acl_access / system.posix_acl_default. */
  acls: boolean;
  /** The writing (or reading) process is root: trusted.* and security.* are in reach. */
  root: boolean;
  /** security.capability too (--preserve-special-bits). */
  capabilities: boolean;
}

export const ACL_NAMES = ['system.posix_acl_access', 'system.posix_acl_default'] as const;

/** The policy for this process: `root` from its effective uid. */
export function xattrPolicy(o: { xattrs?: boolean; acls?: boolean; capabilities?: boolean }): XattrPolicy | undefined {
  if (!o.xattrs && !o.acls) return undefined;
  return { xattrs: o.xattrs === true, acls: o.acls === true, root: process.geteuid?.() === 0, capabilities: o.capabilities === true };
}

/** Is `name` one that ferry reads and writes under `p`? */
export function managedName(name: string, p: XattrPolicy): boolean {
  if (p.acls && (ACL_NAMES as readonly string[]).includes(name)) return true;
  if (!p.xattrs) return false;
  if (name.startsWith('user.')) return true;
  if (!p.root) return false;
  if (name === 'security.capability') return p.capabilities;
  return name.startsWith('trusted.') || name.startsWith('security.');
}

/** The managed attributes of `path` (its last component not followed unless `follow`), sorted. */
export function readXattrs(path: string, follow: boolean, p: XattrPolicy): Xattrs {
  const out: Xattrs = [];
  for (const name of listXattrs(path, follow).sort()) {
    if (!managedName(name, p)) continue;
    const v = getXattr(path, name, follow);
    if (v !== null) out.push([name, v]);
  }
  return out;
}

export function xattrsEqual(a: Xattrs | undefined, b: Xattrs | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    if (x[i]![0] !== y[i]![0] || !x[i]![1].equals(y[i]![1])) return false;
  }
  return true;
}

/** Filter a list (e.g. a peer's) down to the names this policy writes, sorted and without duplicates. */
export function allowedXattrs(list: Xattrs | undefined, p: XattrPolicy): Xattrs {
  const seen = new Set<string>();
  const out: Xattrs = [];
  for (const [n, v] of list ?? []) {
    if (!managedName(n, p) || seen.has(n)) continue;
    seen.add(n);
    out.push([n, v]);
  }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/**
 * Make the managed attributes of `path` exactly `want`: remove the managed names it
 * has and `want` lacks, set those that differ. Throws the system error of a failed call.
 */
export function applyXattrs(path: string, follow: boolean, want: Xattrs | undefined, p: XattrPolicy): void {
  const target = allowedXattrs(want, p);
  const have = readXattrs(path, follow, p);
  const wanted = new Map(target);
  for (const [n] of have) if (!wanted.has(n)) removeXattr(path, n, follow);
  const had = new Map(have);
  for (const [n, v] of target) {
    const cur = had.get(n);
    if (cur === undefined || !cur.equals(v)) setXattr(path, n, v, follow);
  }
}
