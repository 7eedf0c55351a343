/**
 * A delaying, rate-limiting, cutting TCP proxy on 127.0.0.1 — the WAN in a box.
 *
 * This kernel has no netem, so latency is emulated in userspace: every chunk read
 * from one side is released to the other side `delayMs` after it arrived, in
 * order (one-way delay, each direction, so a round trip costs 2 × delayMs). With
 * `rateBytesPerSec` the link also has a serialisation rate: a chunk leaves the
 * "wire" no earlier than the previous one finished plus len/rate, then travels
 * delayMs.
 *
 * What makes this faithful rather than a sleep() is the bounded in-flight buffer:
 * a real path holds at most rate × delay bytes (the bandwidth-delay product).
 * When that much is queued the proxy pauses the source socket, so the sender's
 * kernel buffers fill and its TCP window closes — a protocol that waits for a
 * round trip per file, or keeps too little in flight, is slowed exactly as it
 * would be on a long link. Without a rate, the buffer defaults to 4 MiB.
 *
 * Fault injection: `cutAfterBytes` forwards exactly that many client→server bytes,
 * then ends the server side and resets the client side (`cutAfterBytesDown` does the
 * same for server→client), which is how tests produce a connection lost mid-transfer.
 *
 * Connection set-up costs what TCP's does: the client's first byte reaches the
 * server three one-way delays after the proxy accepted (SYN, SYN-ACK, then the
 * data), the server's first byte reaches the client one delay after that. The
 * kernel completes the client's connect() at once; only the bytes wait.
 *
 * Round trips are counted without a clock: every chunk gets a flight number, one
 * more than the highest flight delivered to the side that sent it before it was
 * sent (a side that answers what it received is one flight further; bytes written
 * without waiting for anything stay in their flight). On a strictly request/reply
 * exchange the last flight is the number of one-way trips the session cost; a
 * side that keeps streaming while replies come back climbs flights with time, so
 * tests read flights where nothing streams (the set-up and the end). `trace(i)`
 * gives connection i's chunks in delivery order.
 *
 * Each accepted connection gets its own pair of pipes, so parallel streams are
 * handled independently. Timers re-check the clock, so nothing is ever released
 * early (setTimeout may fire a millisecond soon).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface ProxyOptions {
  /** Port of the real server on 127.0.0.1. */
  targetPort: number;
  targetHost?: string;
  /** One-way delay, applied in each direction. */
  delayMs: number;
  /** Link rate per direction per connection; unlimited when absent. */
  rateBytesPerSec?: number;
  /** In-flight cap per direction; default rate × delay (at least 64 KiB), or 4 MiB without a rate. */
  bufferBytes?: number;
  /** Forward this many client→server bytes, then cut the connection. */
  cutAfterBytes?: number;
  /** Forward this many server→client bytes, then cut the connection. */
  cutAfterBytesDown?: number;
}

/** One chunk as delivered: its direction, size and flight (see the essay). */
export interface TraceChunk {
  dir: 'up' | 'down';
  bytes: number;
  flight: number;
}

export interface Proxy {
  port: number;
  /** Client→server bytes delivered so far, all connections. */
  readonly bytesUp: number;
  /** Server→client bytes delivered so far, all connections. */
  readonly bytesDown: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connection i's chunks (0 = the first accepted), in the order they were delivered. */
  trace(i: number): readonly TraceChunk[];
  close(): Promise<void>;
}

interface Pending {
  buf: Buffer;
  releaseAt: number;
  flight: number;
}

/** The highest flight delivered to each end of one connection so far. */
interface Flights {
  client: number;
  server: number;
}

export async function startProxy(options: ProxyOptions): Promise<Proxy> {
  const delay = Math.max(0, options.delayMs);
  const rate = options.rateBytesPerSec;
  const cap =
    options.bufferBytes ?? (rate !== undefined ? Math.max(64 * 1024, Math.ceil((rate * delay) / 1000)) : 4 * 1024 * 1024);
  const totals = { up: 0, down: 0, connections: 0 };
  const sockets = new Set<Socket>();
  const traces: TraceChunk[][] = [];

  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    totals.connections++;
    const trace: TraceChunk[] = [];
    traces.push(trace);
    const flights: Flights = { client: 0, server: 0 };
    const accepted = performance.now();
    const upstream = connect({ port: options.targetPort, host: options.targetHost ?? '127.0.0.1', allowHalfOpen: true });
    sockets.add(client);
    sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let dead = false;
    const kill = (): void => {
      if (dead) return;
      dead = true;
      up.stop();
      down.stop();
      client.destroy();
      upstream.destroy();
    };
    const cut = (from: Socket, to: Socket): void => {
      // Exactly N bytes went to `to`: finish it cleanly so they are not lost, and
      // reset the other side, as a dropped link would look to it.
      dead = true;
      up.stop();
      down.stop();
      to.end(() => to.destroy());
      from.resetAndDestroy();
    };
    // TCP's set-up: the client's bytes leave after SYN and SYN-ACK, the server's after the ACK.
    const up = pipe(client, upstream, { dir: 'up', from: 'client', to: 'server', flights, trace, notBefore: accepted + 2 * delay },
      (n) => (totals.up += n), options.cutAfterBytes, () => cut(client, upstream));
    const down = pipe(upstream, client, { dir: 'down', from: 'server', to: 'client', flights, trace, notBefore: accepted + 3 * delay },
      (n) => (totals.down += n), options.cutAfterBytesDown, () => cut(upstream, client));
    for (const s of [client, upstream]) {
      s.on('error', kill);
      s.on('close', () => {
        sockets.delete(s);
        // A side that closed completely (not half-closed) takes the other with it
        // once everything queued toward it has been delivered.
        if (!dead && up.done && down.done) kill();
      });
    }
    upstream.once('connect', () => client.resume());
  });

  interface Side {
    dir: TraceChunk['dir'];
    from: keyof Flights;
    to: keyof Flights;
    flights: Flights;
    trace: TraceChunk[];
    /** Nothing leaves before this (connection set-up). */
    notBefore: number;
  }

  function pipe(from: Socket, to: Socket, side: Side, count: (n: number) => void, cutAfter: number | undefined, onCut: () => void) {
    const queue: Pending[] = [];
    let queued = 0;
    let lastSent = side.notBefore; // when the previous chunk finished serialising
    let forwarded = 0; // bytes accepted toward the cut limit
    let ended = false;
    let cutPending = false;
    let timer: NodeJS.Timeout | undefined;
    let waitingDrain = false;
    const state = {
      done: false,
      stop(): void {
        if (timer) clearTimeout(timer);
        timer = undefined;
        queue.length = 0;
      },
    };

    from.on('data', (chunk: Buffer) => {
      if (cutPending) return;
      if (cutAfter !== undefined && forwarded + chunk.length >= cutAfter) {
        chunk = chunk.subarray(0, cutAfter - forwarded);
        cutPending = true;
        from.pause();
      }
      forwarded += chunk.length;
      const now = performance.now();
      let leaves = Math.max(now, side.notBefore);
      if (rate !== undefined) {
        lastSent = Math.max(now, lastSent) + (chunk.length * 1000) / rate;
        leaves = lastSent;
      }
      queue.push({ buf: chunk, releaseAt: leaves + delay, flight: side.flights[side.from] + 1 });
      queued += chunk.length;
      if (queued >= cap) from.pause();
      schedule();
    });
    from.on('end', () => {
      ended = true;
      schedule();
    });

    function schedule(): void {
      if (timer !== undefined || waitingDrain) return;
      const head = queue[0];
      if (head === undefined) {
        if (cutPending) {
          state.done = true;
          onCut();
        } else if (ended && !state.done) {
          state.done = true;
          to.end();
        }
        return;
      }
      const wait = head.releaseAt - performance.now();
      if (wait > 0) {
        timer = setTimeout(() => {
          timer = undefined;
          release();
        }, Math.ceil(wait));
      } else {
        release();
      }
    }

    function release(): void {
      const now = performance.now();
      let ok = true;
      while (queue.length > 0 && queue[0]!.releaseAt <= now && ok) {
        const { buf, flight } = queue.shift()!;
        queued -= buf.length;
        count(buf.length);
        side.flights[side.to] = Math.max(side.flights[side.to], flight);
        side.trace.push({ dir: side.dir, bytes: buf.length, flight });
        ok = to.write(buf);
      }
      if (queued < cap && !cutPending && !ended) from.resume();
      if (!ok) {
        waitingDrain = true;
        to.once('drain', () => {
          waitingDrain = false;
          schedule();
        });
        return;
      }
      schedule();
    }

    return state;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;

  return {
    port,
    get bytesUp() {
      return totals.up;
    },
    get bytesDown() {
      return totals.down;
    },
    get connections() {
      return totals.connections;
    },
    trace(i: number): readonly TraceChunk[] {
      return traces[i] ?? [];
    },
    close(): Promise<void> {
      for (const s of sockets) s.destroy();
      sockets.clear();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
