/**
 * `ferry recv`: listen, authenticate each connection, run receiver sessions
 * (transfer/receiver.ts) into DST, one session at a time.
 *
 * Policy, decided for a demanding user who may face an attacker on the network:
 * - Nothing is written before authentication succeeds: DST is not even opened until
 *   a SESSION frame arrives over an authenticated channel.
 * - A failed authentication (FERRY_E_AUTH) is logged and the receiver keeps
 *   listening, so a typo on the sending side does not kill a waiting `recv`; but it
 *   exits with status 3 after `maxAuthFailures` failures (default 3) when it has not
 *   yet served a session, and with `--keep-serving` it never exits on them. CPace
 *   limits an attacker to one online guess per connection and none offline; a
 *   handshake that got past the server's key confirmation without a valid client
 *   MAC counts as a failed guess however it ended (secure/handshake.ts). A guesser
 *   can therefore never make recv exit 0 or write anything; at worst it exits 3 (a
 *   visible DoS, and the last resort against guessing from many addresses).
 * - Throttling punishes the guesser, not everyone. Unauthenticated connections are
 *   counted per source address (an IPv6 /64 counts as one address, since one site
 *   usually owns a whole /64). An address gets `maxHandshakesPerAddress` (4)
 *   handshakes at a time; its other connections wait their turn, with nothing sent
 *   or parsed (up to `maxPendingPerAddress`, 64, so that a `-P 64` sender, whose
 *   extra streams all connect at once, is never refused), and `maxPendingHandshakes`
 *   (256) bounds them all. A stranger's idle sockets therefore fill only their own address's
 *   turns; when all 256 are taken, a newcomer from a less busy address displaces a
 *   waiting (never a served) connection of the busiest one. Each address's failures
 *   double a delay before that address's next handshake is served (1 s, 2 s, 4 s …
 *   60 s), one at a time while it has failures; a success from the address clears
 *   them and 15 min without a failure forgets them. Other addresses are served at once.
 * - Deadlines before authentication: a connection must deliver the client's hello
 *   within `helloTimeoutMs` (5 s) of its turn starting and finish the handshake
 *   within `handshakeTimeoutMs` (10 s); then its turn passes to the next.
 * - Connections that are not ferry at all (port scanners, wrong protocol) are
 *   dropped with a warning and do not count as authentication failures.
 * - One session at a time: a sender that arrives while a session runs waits until it
 *   ends (`--keep-serving`) or is refused with "busy" (a single-session recv), so two
 *   sessions never write the same file at once. A waiting sender is told that it is
 *   queued (QUEUED, at once and every QUEUED_EVERY_MS, which also keeps its channel's
 *   idle timer quiet). Like "busy", the notice goes out only after the sender proved
 *   the secret and sent SESSION, inside the encrypted channel: a stranger learns
 *   nothing from it, and the handshake (and its throttling) is the same busy or idle. Extra `-P` streams (JOIN) are routed
 *   to the running session by its random token and refused otherwise.
 * - By default recv exits after its first session: 0 when everything was committed,
 *   1 when some files failed, 4 when the session broke (cut connection, protocol).
 *   With `--keep-serving` it serves sessions one after another until interrupted.
 */
import net from 'node:net';
import type { Writable } from 'node:stream';
import { ErrorCodes, FerryError, isFerryError } from '../core/errors.js';
import { SafeWriter } from '../fs/safe-writer.js';
import { systemLookup, type NameLookup } from '../fs/owner-names.js';
import type { XattrPolicy } from '../fs/xattrs.js';
import { channelOptions, establishChannel, peerNameOf, type SecureChannel } from '../secure/channel.js';
import { ReceiverSession, checkSessionPolicy, readOpening, refuseSession, type ReceiverEvents, type ReceiverResult } from '../transfer/receiver.js';
import { HELLO_BYTES } from '../wire/hello.js';
import { MAX_STREAMS, MsgType, SessionFlags, TRANSFER_VERSION } from '../wire/messages.js';
import { receiveStream, writableSink, type StreamResult } from './stream.js';

export interface RecvOptions {
  dst: string;
  /**
   * The address to listen on. Unset: every address, IPv6 and IPv4 on one dual-stack
   * socket (`::` with IPv6-only off), or every IPv4 address where the machine has no
   * IPv6. An IPv6 address given (`::` included) binds IPv6 only.
   */
  host?: string;
  port: number;
  secret: string;
  ktls: 'auto' | 'on' | 'off';
  keepServing: boolean;
  maxAuthFailures: number;
  preserveSpecial: boolean;
  /**
   * -o/-g: apply the owners and groups a sender sends (send -o/-g), by number. Owners
   * only when running as root; groups as non-root only where the kernel permits.
   */
  owners?: { uid: boolean; gid: boolean };
  /** --names: map the owner and group names a sender sends (send --names) to our ids (fs/owner-names). */
  ownerNames?: boolean;
  /** -X/-A: apply the sender's extended attributes that this policy allows (fs/xattrs). */
  xattrs?: XattrPolicy;
  /** Refuse sessions that ask for --delete (FERRY_E_REFUSED). */
  refuseDelete?: boolean;
  /** Per-session caps (core/limits.ts defaults). */
  maxEntries?: number;
  maxHoleBytes?: number;
  /** `ferry recv -`: write the one byte stream a `ferry send -` sends here (modes/stream.ts). */
  streamOutput?: Writable;
  /** The whole handshake of one connection, from when it is served (default 10 s). */
  handshakeTimeoutMs?: number;
  /** The client's hello must arrive within this long of the connection being served (default 5 s). */
  helloTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** Delay after an address's first failed authentication; doubles with each further one (default 1000 ms). */
  authBackoffMs?: number;
  /** Cap on that delay (default 60 s). */
  authBackoffMaxMs?: number;
  /** An address's failures are forgotten after this long without a new one (default 15 min). */
  authFailureMemoryMs?: number;
  /** Handshakes served at a time for one address (default 4); its other connections wait their turn. */
  maxHandshakesPerAddress?: number;
  /** Unauthenticated connections, served or waiting, from one address (default 64, a `-P 64` sender) and overall (default 256). */
  maxPendingPerAddress?: number;
  maxPendingHandshakes?: number;
  /** Aborting it stops listening, drops every connection and resolves with the sessions so far. */
  signal?: AbortSignal;
  onListening?(host: string, port: number, scope: ListenScope): void;
  onSessionStart?(peer: string, flags: number, streams: number): ReceiverEvents | undefined;
  onSessionEnd?(r: RecvSessionOutcome): void;
  onWarning?(msg: string): void;
}

/** What a listener covers: the one address asked for, every IPv6 and IPv4 one, or every IPv4 one (no IPv6 here). */
export type ListenScope = 'address' | 'dual-stack' | 'ipv4-only';

/**
 * Listen on `host` (see RecvOptions.host), falling back from a dual-stack socket to
 * IPv4 when the machine has no IPv6. Says which it got.
 */
export async function listenOn(server: net.Server, host: string | undefined, port: number): Promise<ListenScope> {
  const attempt = (opts: net.ListenOptions): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts, () => {
        server.off('error', reject);
        resolve();
      });
    });
  const fail = (shown: string, e: NodeJS.ErrnoException): FerryError =>
    new FerryError(ErrorCodes.CONNECT, `cannot listen on ${shown}:${port}: ${e.code ?? e.message}`, { cause: e });
  if (host !== undefined) {
    await attempt({ host, port, ...(host.includes(':') ? { ipv6Only: true } : {}) }).catch((e: NodeJS.ErrnoException) => {
      throw fail(host.includes(':') ? `[${host}]` : host, e);
    });
    return 'address';
  }
  try {
    await attempt({ host: '::', port, ipv6Only: false });
    return 'dual-stack';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL' && code !== 'EPROTONOSUPPORT') throw fail('[::]', e as NodeJS.ErrnoException);
  }
  await attempt({ host: '0.0.0.0', port }).catch((e: NodeJS.ErrnoException) => {
    throw fail('0.0.0.0', e);
  });
  return 'ipv4-only';
}

export interface RecvSessionOutcome {
  result?: ReceiverResult;
  /** A byte stream (`ferry recv -`) instead of a tree. */
  stream?: StreamResult;
  error?: FerryError;
  seconds: number;
  peer: string;
  cipher: string;
  tx: string;
  rx: string;
}

export interface RecvOutcome {
  sessions: RecvSessionOutcome[];
  /** Set when recv stopped because of authentication failures. */
  authError?: FerryError;
}

export const RecvDefaults = {
  handshakeTimeoutMs: 10_000,
  helloTimeoutMs: 5_000,
  authBackoffMs: 1_000,
  authBackoffMaxMs: 60_000,
  authFailureMemoryMs: 15 * 60_000,
  maxHandshakesPerAddress: 4,
  maxPendingPerAddress: MAX_STREAMS,
  maxPendingHandshakes: 256,
} as const;

/** A queued sender hears QUEUED again this often (well inside its channel's idle timeout). */
export const QUEUED_EVERY_MS = 20_000;

/** Addresses whose failures are remembered at most (the oldest idle ones are forgotten first). */
const MAX_TRACKED_ADDRESSES = 4096;

/**
 * The key an address is counted under: IPv4 as is (an IPv4-mapped IPv6 address as
 * its IPv4), IPv6 by its /64 prefix.
 */
export function addressKey(address: string | undefined): string {
  if (address === undefined || address === '') return '?';
  const a = address.replace(/%.*$/, '').toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return mapped[1]!;
  if (!a.includes(':')) return a;
  const [head = '', tail] = a.split('::', 2) as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (g.includes('.') ? g : Number.parseInt(g || '0', 16).toString(16)))
    .join(':')}::/64`;
}

type GuardOptions = {
  [K in 'authBackoffMs' | 'authBackoffMaxMs' | 'authFailureMemoryMs' | 'maxHandshakesPerAddress' | 'maxPendingPerAddress' | 'maxPendingHandshakes']: number;
};

interface PeerState {
  /** Unauthenticated connections from this address now (waiting for a turn or in the handshake). */
  pending: number;
  /** Of those, handshakes being served now. */
  active: number;
  failures: number;
  lastFailure: number;
  /** The next handshake from this address starts no earlier than this (Date.now() ms). */
  notBefore: number;
  /** Connections waiting for a turn: woken (all, oldest first) whenever a turn ends. */
  waiters: Set<() => void>;
}

/**
 * Who may start a handshake, and when: per-address and global counts of
 * unauthenticated connections, turns (so many handshakes at a time per address, one
 * while it has failures) and per-address failure back-off. No sockets: the listener
 * reports what happened and asks what to do.
 */
export class ListenerGuard {
  readonly #peers = new Map<string, PeerState>();
  readonly #o: GuardOptions;
  #pending = 0;

  constructor(o: Partial<GuardOptions> = {}) {
    this.#o = {
      authBackoffMs: o.authBackoffMs ?? RecvDefaults.authBackoffMs,
      authBackoffMaxMs: o.authBackoffMaxMs ?? RecvDefaults.authBackoffMaxMs,
      authFailureMemoryMs: o.authFailureMemoryMs ?? RecvDefaults.authFailureMemoryMs,
      maxHandshakesPerAddress: o.maxHandshakesPerAddress ?? RecvDefaults.maxHandshakesPerAddress,
      maxPendingPerAddress: o.maxPendingPerAddress ?? RecvDefaults.maxPendingPerAddress,
      maxPendingHandshakes: o.maxPendingHandshakes ?? RecvDefaults.maxPendingHandshakes,
    };
  }

  /** Unauthenticated connections now, and addresses remembered (tests look for leaks). */
  get pending(): number {
    return this.#pending;
  }
  get tracked(): number {
    return this.#peers.size;
  }

  /**
   * A new connection from `key`: 'ok' (counted; call release() once), or why it is
   * refused. When every slot is taken, a newcomer whose address holds fewer
   * connections than the busiest address by two or more gets `{ evict }`: drop one
   * of that address's connections still waiting for a turn (release() it) and admit
   * again. A few addresses then cannot fill the listener.
   */
  admit(key: string, now: number): 'ok' | 'address' | 'global' | { evict: string } {
    const st = this.#state(key, now);
    let verdict: 'ok' | 'address' | 'global' | { evict: string } = 'ok';
    if (st.pending >= this.#o.maxPendingPerAddress) verdict = 'address';
    else if (this.#pending >= this.#o.maxPendingHandshakes) {
      verdict = 'global';
      let most = st.pending + 1;
      for (const [k, other] of this.#peers) {
        if (other.pending > most && other.pending > other.active) {
          most = other.pending;
          verdict = { evict: k };
        }
      }
    }
    if (verdict !== 'ok') {
      this.#forgetIfIdle(key, st, now);
      return verdict;
    }
    st.pending++;
    this.#pending++;
    return 'ok';
  }

  release(key: string, now: number): void {
    const st = this.#peers.get(key);
    if (!st || st.pending === 0) return;
    st.pending--;
    this.#pending--;
    this.#forgetIfIdle(key, st, now);
  }

  /**
   * Wait until a handshake from `key` (admitted) may start: fewer than
   * `maxHandshakesPerAddress` of the address's handshakes running, or, while it has
   * failures, none running and its delay over. Returns the function that ends the
   * turn; `cancelled` (the socket closed, recv stopped) ends the wait early, with no turn.
   */
  async turn(key: string, cancelled: Promise<void>): Promise<() => void> {
    const st = this.#peers.get(key);
    if (!st) return () => undefined;
    let gone = false;
    void cancelled.then(() => (gone = true));
    for (;;) {
      if (gone) return () => undefined;
      const wait = st.failures > 0 ? st.notBefore - Date.now() : 0;
      if (st.active < (st.failures > 0 ? 1 : this.#o.maxHandshakesPerAddress) && wait <= 0) break;
      let wake!: () => void;
      const woken = new Promise<void>((r) => (wake = r));
      st.waiters.add(wake);
      const timer = wait > 0 ? setTimeout(wake, wait) : undefined;
      await Promise.race([woken, cancelled]);
      clearTimeout(timer);
      st.waiters.delete(wake);
    }
    st.active++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      st.active--;
      for (const w of [...st.waiters]) w();
    };
  }

  /** A failed guess from `key`; returns the delay before its next handshake, ms. */
  failed(key: string, now: number): number {
    const st = this.#state(key, now);
    st.failures++;
    st.lastFailure = now;
    const delay = Math.min(this.#o.authBackoffMs * 2 ** Math.min(st.failures - 1, 30), this.#o.authBackoffMaxMs);
    st.notBefore = now + delay;
    // Most recently failed last, so eviction takes the longest quiet first.
    this.#peers.delete(key);
    this.#peers.set(key, st);
    return delay;
  }

  /** `key` proved the secret: its failures are forgiven. */
  succeeded(key: string, now: number): void {
    const st = this.#peers.get(key);
    if (!st) return;
    st.failures = 0;
    st.notBefore = 0;
    this.#forgetIfIdle(key, st, now);
  }

  #state(key: string, now: number): PeerState {
    let st = this.#peers.get(key);
    if (st && st.failures > 0 && now - st.lastFailure >= this.#o.authFailureMemoryMs) {
      st.failures = 0;
      st.notBefore = 0;
    }
    if (!st) {
      if (this.#peers.size >= MAX_TRACKED_ADDRESSES) this.#evict(now);
      st = { pending: 0, active: 0, failures: 0, lastFailure: 0, notBefore: 0, waiters: new Set() };
      this.#peers.set(key, st);
    }
    return st;
  }

  #forgetIfIdle(key: string, st: PeerState, now: number): void {
    if (st.pending === 0 && (st.failures === 0 || now - st.lastFailure >= this.#o.authFailureMemoryMs)) this.#peers.delete(key);
  }

  /** Make room (an eighth, so this runs rarely): forget expired addresses, then the longest quiet idle ones. */
  #evict(now: number): void {
    for (const [k, st] of this.#peers) this.#forgetIfIdle(k, st, now);
    for (const [k, st] of this.#peers) {
      if (this.#peers.size <= (MAX_TRACKED_ADDRESSES * 7) / 8) break;
      if (st.pending === 0) this.#peers.delete(k);
    }
  }
}

/** An unauthenticated connection as the listener tracks it. */
interface Pending {
  /** Its handshake has started (it is no longer waiting for a turn). */
  served: boolean;
  evict(): void;
}

export async function recv(o: RecvOptions): Promise<RecvOutcome> {
  const sessions: RecvSessionOutcome[] = [];
  const server = net.createServer();
  const sockets = new Set<net.Socket>();
  let authFailures = 0;
  const guard = new ListenerGuard(o);
  /** Per address, its unauthenticated connections, oldest first (for ListenerGuard's evictions). */
  const unauthenticated = new Map<string, Set<Pending>>();
  const helloTimeoutMs = o.helloTimeoutMs ?? RecvDefaults.helloTimeoutMs;
  const chOpts = channelOptions('server', { ...o, handshakeTimeoutMs: o.handshakeTimeoutMs ?? RecvDefaults.handshakeTimeoutMs });
  let active: { session: ReceiverSession; done: Promise<void> } | null = null;
  let queue: Promise<void> = Promise.resolve();
  /** Sessions running or waiting for their turn. */
  let inLine = 0;
  let stopped = false;
  let finish!: (v: RecvOutcome) => void;
  let fail!: (e: unknown) => void;
  const outcome = new Promise<RecvOutcome>((res, rej) => {
    finish = res;
    fail = rej;
  });

  const stop = (v: RecvOutcome | Error): void => {
    if (stopped) return;
    stopped = true;
    server.close();
    for (const s of sockets) s.destroy();
    if (v instanceof Error) fail(v);
    else finish(v);
  };

  /** Serve one admitted connection's handshake, within its address's turn and the deadlines. */
  const handshake = async (sock: net.Socket, key: string, closed: Promise<void>, me: Pending): Promise<SecureChannel | null> => {
    const peer = peerNameOf(sock);
    const endTurn = await guard.turn(key, closed);
    me.served = true;
    let helloLate = false;
    const helloTimer = setTimeout(() => {
      if (sock.bytesRead < HELLO_BYTES) {
        helloLate = true;
        sock.destroy();
      }
    }, helloTimeoutMs);
    try {
      if (stopped || sock.destroyed) return null;
      const ch = await establishChannel(sock, chOpts);
      guard.succeeded(key, Date.now());
      return ch;
    } catch (e) {
      sock.destroy();
      const err = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String(e));
      if (err.code === ErrorCodes.AUTH) {
        authFailures++;
        const delay = guard.failed(key, Date.now());
        o.onWarning?.(
          `${err.message} (failed attempt ${authFailures}${o.keepServing ? '' : ` of ${o.maxAuthFailures}`}; ` +
            `the next handshake from ${key} waits ${(delay / 1000).toFixed(1)} s)`,
        );
        if (!o.keepServing && sessions.length === 0 && authFailures >= o.maxAuthFailures && !active) {
          stop({ sessions, authError: err });
        }
      } else if (helloLate) {
        o.onWarning?.(`dropped a connection from ${peer}: no hello within ${(helloTimeoutMs / 1000).toFixed(1)} s`);
      } else if (!stopped) {
        o.onWarning?.(`dropped a connection: ${err.code}: ${err.message}`);
      }
      return null;
    } finally {
      clearTimeout(helloTimer);
      endTurn();
    }
  };

  const runSession = async (ch: SecureChannel, frames: AsyncIterator<import('../secure/channel-api.js').Frame>, msg: import('../wire/messages.js').SessionMsg): Promise<void> => {
    const t0 = performance.now();
    const peer = ch.info.peer;
    let result: ReceiverResult | undefined;
    let error: FerryError | undefined;
    let sink: SafeWriter | null = null;
    try {
      checkSessionPolicy(msg, o, peer);
      sink = await SafeWriter.open(o.dst, {
        preserveSpecialBits: o.preserveSpecial && (msg.flags & SessionFlags.PRESERVE_SPECIAL) !== 0,
        dryRun: (msg.flags & SessionFlags.DRY_RUN) !== 0,
        umask: process.umask(), // modes from the wire are masked like those of files we create
        writeBehind: true,
        directWrites: true,
        ...peerMetadataPolicy(o, msg.flags),
        ...(msg.partialDir !== undefined ? { partialDir: msg.partialDir } : {}),
      });
      const events = o.onSessionStart?.(peer, msg.flags, msg.streams);
      const session = new ReceiverSession(ch, frames, msg, sink, {
        ...(events ? { events } : {}),
        ...(o.refuseDelete ? { refuseDelete: true } : {}),
        ...(o.maxEntries !== undefined ? { maxEntries: o.maxEntries } : {}),
        ...(o.maxHoleBytes !== undefined ? { maxHoleBytes: o.maxHoleBytes } : {}),
        ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
        ...peerOwnerNames(o, msg.flags),
      });
      const done = session.run().then(
        (r) => {
          result = r;
        },
        (e: unknown) => {
          error = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
        },
      );
      active = { session, done };
      await done;
    } catch (e) {
      error = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
      await refuseSession(ch, error);
    } finally {
      active = null;
      sink?.close(); // its directory descriptors
    }
    const out: RecvSessionOutcome = { seconds: (performance.now() - t0) / 1000, peer, cipher: ch.info.cipher, tx: ch.info.tx, rx: ch.info.rx };
    if (result) out.result = result;
    if (error) out.error = error;
    sessions.push(out);
    o.onSessionEnd?.(out);
    if (!o.keepServing) stop({ sessions });
  };

  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.setNoDelay(true);
    const key = addressKey(sock.remoteAddress);
    let admitted = stopped ? 'stopped' : guard.admit(key, Date.now());
    if (typeof admitted === 'object') {
      // Drop the newest of that address's connections still waiting for a turn.
      let victim: Pending | undefined;
      for (const c of unauthenticated.get(admitted.evict) ?? []) if (!c.served) victim = c;
      victim?.evict();
      admitted = victim ? guard.admit(key, Date.now()) : 'global';
    }
    if (admitted !== 'ok') {
      sock.destroy();
      return;
    }
    // The slot is freed when the handshake ends or the socket closes, whichever is first.
    let slotHeld = true;
    let onClosed!: () => void;
    const closed = new Promise<void>((r) => (onClosed = r));
    const mine = unauthenticated.get(key) ?? new Set<Pending>();
    unauthenticated.set(key, mine);
    const freeSlot = (): void => {
      if (slotHeld) {
        slotHeld = false;
        guard.release(key, Date.now());
        mine.delete(me);
        if (mine.size === 0 && unauthenticated.get(key) === mine) unauthenticated.delete(key);
      }
    };
    const me: Pending = {
      served: false,
      evict: () => {
        freeSlot();
        sock.destroy();
      },
    };
    mine.add(me);
    sock.once('close', () => {
      freeSlot();
      onClosed();
    });
    void (async () => {
      let ch: SecureChannel | null;
      try {
        ch = await handshake(sock, key, closed, me);
      } finally {
        freeSlot();
      }
      if (!ch || stopped) return;
      if (o.streamOutput) {
        if (active || sessions.length > 0) {
          ch.destroy();
          return;
        }
        const t0 = performance.now();
        const out: RecvSessionOutcome = { seconds: 0, peer: ch.info.peer, cipher: ch.info.cipher, tx: ch.info.tx, rx: ch.info.rx };
        o.onSessionStart?.(ch.info.peer, 0, 1);
        try {
          out.stream = await receiveStream(ch, writableSink(o.streamOutput));
        } catch (e) {
          out.error = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String(e));
        }
        out.seconds = (performance.now() - t0) / 1000;
        sessions.push(out);
        o.onSessionEnd?.(out);
        stop({ sessions });
        return;
      }
      let opening;
      try {
        opening = await readOpening(ch);
      } catch (e) {
        o.onWarning?.(`dropped a connection from ${ch.info.peer}: ${(e as Error).message}`);
        ch.destroy();
        return;
      }
      if (opening.kind === 'join') {
        const a = active as { session: ReceiverSession } | null;
        if (a && Buffer.from(a.session.token).equals(Buffer.from(opening.join.token))) {
          a.session.addStream(ch, opening.frames, opening.join.stream);
        } else {
          ch.destroy();
        }
        return;
      }
      const msg = opening.session;
      if (active && !o.keepServing) {
        await refuseSession(ch, new FerryError(ErrorCodes.CONNECT, 'receiver is busy with another session'));
        return;
      }
      // Sessions run strictly one after another; one that has to wait is told so.
      const prev = queue;
      let release!: () => void;
      queue = new Promise<void>((r) => (release = r));
      const ahead = inLine++;
      let notices: NodeJS.Timeout | undefined;
      if (ahead > 0 && msg.version === TRANSFER_VERSION) {
        const notify = (): void => void ch.send(MsgType.QUEUED, new Uint8Array(0)).catch(() => undefined);
        notify();
        notices = setInterval(notify, QUEUED_EVERY_MS);
      }
      try {
        await prev;
      } finally {
        clearInterval(notices);
      }
      try {
        if (!stopped) await runSession(ch, opening.frames, msg);
        else ch.destroy();
      } finally {
        inLine--;
        release();
      }
    })().catch((e) => stop(isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String(e))));
  });

  const onAbort = (): void => stop({ sessions });
  if (o.signal?.aborted) return { sessions };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  void outcome.finally(() => o.signal?.removeEventListener('abort', onAbort)).catch(() => undefined);

  const scope = await listenOn(server, o.host, o.port);
  const addr = server.address() as net.AddressInfo;
  o.onListening?.(addr.address, addr.port, scope);
  // The handshake's curve code loads while we wait for the first sender, not while it waits for us.
  void import('../secure/cpace.js').catch(() => undefined);
  return outcome;
}

/**
 * What of the sender's metadata beyond mode and times this receiver applies: owners
 * only when both ends asked and (for uids) we run as root; extended attributes only
 * when both ends asked, filtered by our own policy (security.capability only with
 * --preserve-special-bits honoured on both ends). Ids and attributes from a peer are
 * untrusted input: nothing is applied that the receiving user did not ask for.
 */
export function peerMetadataPolicy(
  o: Pick<RecvOptions, 'owners' | 'xattrs' | 'preserveSpecial'>,
  flags: number,
): { owners?: { uid: boolean; gid: boolean }; xattrs?: XattrPolicy } {
  const out: { owners?: { uid: boolean; gid: boolean }; xattrs?: XattrPolicy } = {};
  if (o.owners && (flags & SessionFlags.OWNERS) !== 0) out.owners = { uid: o.owners.uid && process.geteuid?.() === 0, gid: o.owners.gid };
  if (o.xattrs && (flags & SessionFlags.XATTRS) !== 0) {
    out.xattrs = { ...o.xattrs, capabilities: o.preserveSpecial && (flags & SessionFlags.PRESERVE_SPECIAL) !== 0 };
  }
  return out;
}

/**
 * --names: map the sender's owner names to our ids when both ends asked (the sender
 * sent OWNER_NAMES, we apply owners or groups and were given --names); otherwise the
 * names are only checked and the numbers kept, ferry's default.
 */
export function peerOwnerNames(o: Pick<RecvOptions, 'owners' | 'ownerNames'>, flags: number): { ownerNames?: NameLookup } {
  if (!o.ownerNames || !o.owners || (flags & SessionFlags.OWNER_NAMES) === 0) return {};
  return { ownerNames: systemLookup() };
}

/** What one session on an already authenticated channel needs (the ssh mode). */
export interface ReceiveOverOptions {
  dst: string;
  preserveSpecial: boolean;
  /** As RecvOptions: what of the sender's owners and attributes to apply (the ssh user asked on both ends). */
  owners?: { uid: boolean; gid: boolean };
  ownerNames?: boolean;
  xattrs?: XattrPolicy;
  onSessionStart?(peer: string, flags: number, streams: number): ReceiverEvents | undefined;
}

/**
 * Serve exactly one session on `ch` (the sender's control stream): no listening, no
 * authentication policy — the channel is already keyed by a secret only the two ends
 * know. When the sender asks for more streams, `dialExtra` opens each (the local side
 * always dials, so that a remote sender behind a firewall still gets its streams); the
 * sender names them with JOIN and its session token.
 */
export async function receiveOver(
  ch: SecureChannel,
  o: ReceiveOverOptions,
  dialExtra?: () => Promise<SecureChannel>,
): Promise<RecvSessionOutcome> {
  const t0 = performance.now();
  const peer = ch.info.peer;
  let result: ReceiverResult | undefined;
  let error: FerryError | undefined;
  const extra: SecureChannel[] = [];
  try {
    const opening = await readOpening(ch);
    if (opening.kind !== 'session') throw new FerryError(ErrorCodes.PROTOCOL, `${peer} sent JOIN before SESSION`);
    const msg = opening.session;
    let started = false;
    let sink: SafeWriter | null = null;
    try {
      sink = await SafeWriter.open(o.dst, {
        preserveSpecialBits: o.preserveSpecial && (msg.flags & SessionFlags.PRESERVE_SPECIAL) !== 0,
        dryRun: (msg.flags & SessionFlags.DRY_RUN) !== 0,
        writeBehind: true,
        directWrites: true,
        ...peerMetadataPolicy(o, msg.flags),
        ...(msg.partialDir !== undefined ? { partialDir: msg.partialDir } : {}),
      });
      const events = o.onSessionStart?.(peer, msg.flags, msg.streams);
      const session = new ReceiverSession(ch, opening.frames, msg, sink, { ...(events ? { events } : {}), ...peerOwnerNames(o, msg.flags) });
      const done = session.run();
      started = true;
      if (msg.streams > 1 && dialExtra) {
        for (let i = 1; i < msg.streams; i++) {
          void (async () => {
            const x = await dialExtra();
            extra.push(x);
            const op = await readOpening(x);
            if (op.kind !== 'join' || !Buffer.from(op.join.token).equals(Buffer.from(session.token))) {
              x.destroy();
              return;
            }
            session.addStream(x, op.frames, op.join.stream);
          })().catch(() => undefined);
        }
      }
      result = await done;
    } catch (e) {
      const err = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
      if (!started) await refuseSession(ch, err);
      throw err;
    } finally {
      sink?.close(); // its directory descriptors
    }
  } catch (e) {
    error = isFerryError(e) ? e : new FerryError(ErrorCodes.INTERNAL, String((e as Error)?.stack ?? e));
    for (const x of extra) x.destroy();
  }
  const out: RecvSessionOutcome = { seconds: (performance.now() - t0) / 1000, peer, cipher: ch.info.cipher, tx: ch.info.tx, rx: ch.info.rx };
  if (result) out.result = result;
  if (error) out.error = error;
  return out;
}
