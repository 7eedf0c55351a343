/**
 * Owners by name (`--names`, issue #14): rsync's default over the network, ferry's option.
 *
 * ferry keeps owners by number unless asked (`-o/-g` carry uid/gid). With `--names` on
 * both ends the sender also sends the user and group *name* of each distinct id, once per
 * session, and the receiver maps each name to its own id; a name it does not know, or an
 * id the sender had no name for, keeps the sender's number (rsync does the same).
 *
 * This module is the pure part: name rules, the sender's "which names are new" table,
 * the receiver's session-wide table (untrusted: every violation is FERRY_E_PROTOCOL),
 * and the lookups. Lookups go through getpwuid_r/getpwnam_r and their group twins in
 * the native addon (native/meta.c), so NSS (LDAP, sssd...) answers as for `ls -l`;
 * without the addon the fallback parses /etc/passwd and /etc/group (no NSS).
 *
 * Bounds: a name is 1..32 bytes of [A-Za-z0-9._-] with an optional trailing "$" (Samba
 * machine accounts); at most MAX_OWNER_NAMES (users and groups together) per session.
 * A sender with a longer or stranger name, or more distinct ids, sends the number only.
 */
import * as fs from 'node:fs';
import { ErrorCodes, FerryError } from '../core/errors.js';
import { MAX_OWNER_NAMES, validOwnerName } from '../core/limits.js';
import { metaAddon } from '../native/index.js';
import type { OwnerNameTable } from '../wire/messages.js';

export { MAX_OWNER_NAMES, validOwnerName };

export interface NameLookup {
  userName(uid: number): string | undefined;
  groupName(gid: number): string | undefined;
  userId(name: string): number | undefined;
  groupId(name: string): number | undefined;
}

// ---------------------------------------------------------------------------------
// Lookups

/** name → id and id → name of a passwd- or group-shaped text (name:x:id:...); first line wins, like getpwnam. */
export function parseIdFile(text: string): { byName: Map<string, number>; byId: Map<number, string> } {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    if (f.length < 3 || f[0] === '' || !/^\d+$/.test(f[2]!)) continue;
    const id = Number(f[2]);
    if (id > 0xfffffffe) continue;
    if (!byName.has(f[0]!)) byName.set(f[0]!, id);
    if (!byId.has(id)) byId.set(id, f[0]!);
  }
  return { byName, byId };
}

/** The fallback: /etc/passwd and /etc/group (or the given files), read once. No NSS. */
export function fileLookup(passwd = '/etc/passwd', group = '/etc/group'): NameLookup {
  const read = (p: string): ReturnType<typeof parseIdFile> => {
    try {
      return parseIdFile(fs.readFileSync(p, 'utf8'));
    } catch {
      return { byName: new Map(), byId: new Map() };
    }
  };
  let u: ReturnType<typeof parseIdFile> | undefined;
  let g: ReturnType<typeof parseIdFile> | undefined;
  return {
    userName: (uid) => (u ??= read(passwd)).byId.get(uid),
    groupName: (gid) => (g ??= read(group)).byId.get(gid),
    userId: (name) => (u ??= read(passwd)).byName.get(name),
    groupId: (name) => (g ??= read(group)).byName.get(name),
  };
}

/**
 * The system's lookups: the native get*_r calls (NSS), else fileLookup(). Tests point
 * FERRY_TEST_OWNER_FILES at a directory holding `passwd` and `group` to give one end of
 * a transfer other names than the machine's.
 */
export function systemLookup(): NameLookup {
  const dir = process.env['FERRY_TEST_OWNER_FILES'];
  if (dir) return fileLookup(`${dir}/passwd`, `${dir}/group`);
  const a = metaAddon();
  if (!a || typeof a.ownerName !== 'function' || typeof a.ownerId !== 'function') return fileLookup();
  const name = (group: boolean, id: number): string | undefined => {
    const r = a.ownerName(group, id);
    return typeof r === 'string' ? r : undefined;
  };
  const id = (group: boolean, n: string): number | undefined => {
    const r = a.ownerId(group, n);
    return r >= 0 ? r : undefined;
  };
  return {
    userName: (uid) => name(false, uid),
    groupName: (gid) => name(true, gid),
    userId: (n) => id(false, n),
    groupId: (n) => id(true, n),
  };
}

// ---------------------------------------------------------------------------------
// Sender

/** The sender's side: the names of ids not sent yet in this session. */
export class SenderOwnerNames {
  readonly #lookup: NameLookup;
  readonly #users = new Set<number>();
  readonly #groups = new Set<number>();
  #count = 0;
  #pending: OwnerNameTable = { users: [], groups: [] };

  constructor(lookup: NameLookup = systemLookup()) {
    this.#lookup = lookup;
  }

  /** Note an entry's owner and group (each id is looked up once). */
  note(uid: number, gid: number): void {
    this.#one(this.#users, uid, this.#pending.users, (x) => this.#lookup.userName(x));
    this.#one(this.#groups, gid, this.#pending.groups, (x) => this.#lookup.groupName(x));
  }

  /** The names noted since the last take() (for the next manifest batch). */
  take(): OwnerNameTable {
    const t = this.#pending;
    this.#pending = { users: [], groups: [] };
    return t;
  }

  #one(seen: Set<number>, id: number, out: Array<[number, string]>, lookup: (id: number) => string | undefined): void {
    if (seen.has(id)) return;
    seen.add(id);
    if (this.#count >= MAX_OWNER_NAMES) return;
    const name = lookup(id);
    if (name === undefined || !validOwnerName(name)) return;
    this.#count++;
    out.push([id, name]);
  }
}

// ---------------------------------------------------------------------------------
// Receiver

function protocol(peer: string, what: string): FerryError {
  return new FerryError(ErrorCodes.PROTOCOL, `peer ${peer} sent a malformed message: MANIFEST: ${what}`, { subject: peer });
}

/**
 * The receiver's side: the session's names (each id at most once, at most
 * MAX_OWNER_NAMES), and — when `lookup` is given (the receiving user asked for names) —
 * the sender's id → our id for the names we know.
 */
export class PeerOwnerNames {
  readonly #peer: string;
  readonly #lookup: NameLookup | undefined;
  readonly #users = new Map<number, number>();
  readonly #groups = new Map<number, number>();
  #count = 0;

  constructor(peer: string, lookup?: NameLookup) {
    this.#peer = peer;
    this.#lookup = lookup;
  }

  /** Take one batch's table; a repeated id, a bad name or too many names is FERRY_E_PROTOCOL. */
  add(t: OwnerNameTable): void {
    this.#count += t.users.length + t.groups.length;
    if (this.#count > MAX_OWNER_NAMES) throw protocol(this.#peer, `more than ${MAX_OWNER_NAMES} owner names`);
    this.#addAll(t.users, this.#users, 'user', (n) => this.#lookup?.userId(n));
    this.#addAll(t.groups, this.#groups, 'group', (n) => this.#lookup?.groupId(n));
  }

  /** Our uid for the sender's `uid` (its own number when the name is unknown here or was not sent). */
  uid(uid: number): number {
    return this.#users.get(uid) ?? uid;
  }

  gid(gid: number): number {
    return this.#groups.get(gid) ?? gid;
  }

  #addAll(pairs: Array<[number, string]>, map: Map<number, number>, what: string, lookup: (n: string) => number | undefined): void {
    for (const [id, name] of pairs) {
      if (!validOwnerName(name)) throw protocol(this.#peer, `bad ${what} name`);
      if (map.has(id)) throw protocol(this.#peer, `${what} ${id} named twice`);
      map.set(id, lookup(name) ?? id);
    }
  }
}
