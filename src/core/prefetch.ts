/**
 * An async iterator set going before anyone consumes it. The sender starts walking
 * SRC while its connection is still being made (TCP and the handshake; over ssh, the
 * whole start of the remote side), so the first batches are there when the session
 * starts instead of the walk beginning then. Up to `ahead` results are pulled before
 * the consumer comes (the walk's first result may be just its root directory; the
 * second sets its listing going, which then runs on to its own high-water mark);
 * after that it passes straight through.
 *
 * `stop()` ends the iterator when no consumer will come (the connection failed), so
 * what it holds open is closed; a consumer that stops early ends it the same way.
 *
 *   const entries = prefetch(walk(root, opts));
 *   const control = await connect().catch(async (e) => { await entries.stop(); throw e; });
 *   for await (const batch of entries) ...
 */
export interface Prefetched<T> extends AsyncIterable<T> {
  stop(): Promise<void>;
}

export function prefetch<T>(it: AsyncIterator<T>, ahead = 2): Prefetched<T> {
  const early: Promise<IteratorResult<T>>[] = [];
  for (let i = 0; i < ahead; i++) {
    const p = it.next();
    // A failure is the consumer's to see; until it comes, it is not unhandled.
    p.catch(() => undefined);
    early.push(p);
  }
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Let the early pulls settle first: a generator runs one request at a time.
    await Promise.allSettled(early);
    await it.return?.();
  };
  return {
    stop,
    async *[Symbol.asyncIterator](): AsyncGenerator<T> {
      try {
        while (early.length > 0) {
          const r = await early.shift()!;
          if (r.done) return;
          yield r.value;
        }
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          yield r.value;
        }
      } finally {
        await stop();
      }
    },
  };
}
