/**
 * `wan`: the same loopback transfers through the delaying proxy
 * (test/support/delay-proxy.ts) at 40 ms round trip and a fixed link rate, so a
 * protocol that pays a round trip per file, or several per session, shows it (the
 * SFTP seed's lesson). The proxy sits in front of sshd (ssh-based tools connect to
 * its port), in front of `ferry recv`, and in front of the port the remote ferry of
 * the ssh mode listens on, so every byte of every tool crosses the same link, and
 * every TCP connection pays its set-up round trip.
 *
 * ferry's own loopback run (no proxy) is raced alongside, because #12's target is
 * relative to it: within 0.5 s of ferry's loopback time, and faster than rsync over
 * ssh on the same link.
 *
 * scp (SFTP) pays several round trips per file: about 0.2 s a file at 40 ms
 * (212 s for ml_tiny's 1,000 files), so ml_small would take over half an hour, and
 * a 5-minute cut-off only says "> 300 s" after costing 5 minutes of a shared
 * machine. It runs only with --full, once (a tool that times out is not run again),
 * and is reported as that lower bound.
 */
import type { Suite } from '../suite.js';
import type { DatasetInfo } from '../datasets.js';
import type { Tool } from '../tools.js';
import { startProxy } from '../../test/support/delay-proxy.js';
import { endpointOf, ferryNetworkTools, ferrySshTools, rsyncSshTool, scpTool, suiteSshd, type SshEndpoint } from './network.js';

export interface WanOptions {
  /** One-way delay; the round trip is twice this. */
  delayMs: number;
  /** Link rate per direction per connection, bytes/s. */
  rateBytesPerSec: number;
}

/** The loopback reference's name in the table. */
const LOOPBACK = 'ferry send/recv (loopback)';

export function makeWanSuite(opts: WanOptions): Suite {
  const rtt = 2 * opts.delayMs;
  return {
    name: 'wan',
    group: 'wan',
    title: `through a delaying proxy: ${rtt} ms RTT, ${(opts.rateBytesPerSec / 1e6).toFixed(0)} MB/s link, fresh destination, cold cache`,
    references: ['rsync -a (ssh)', LOOPBACK],
    destination: 'fresh',
    datasets: ({ quick }) => (quick ? ['ml_tiny'] : ['ml_small']),
    runTimeoutMs: 5 * 60_000,
    quickRunTimeoutMs: 60_000,
    async tools(ctx) {
      const sshd = await suiteSshd(ctx);
      const proxy = await startProxy({ targetPort: sshd.port, delayMs: opts.delayMs, rateBytesPerSec: opts.rateBytesPerSec });
      ctx.onCleanup(() => proxy.close());
      const viaProxy = async (targetPort: number): Promise<number> => {
        const p = await startProxy({ targetPort, delayMs: opts.delayMs, rateBytesPerSec: opts.rateBytesPerSec });
        ctx.onCleanup(() => p.close());
        return p.port;
      };
      const ep = (): SshEndpoint => endpointOf(sshd, proxy.port);
      const loopback: Tool = { ...ferryNetworkTools()[0]!, name: LOOPBACK };
      const tools = [...ferryNetworkTools({ viaProxy }), loopback, ...ferrySshTools(ep, { viaProxy }), rsyncSshTool(ep)];
      if (ctx.full) tools.push(scpTool(ep));
      else ctx.log('wan: scp -r runs only with --full (SFTP pays round trips per file: > 5 min for ml_small at 40 ms)');
      return tools;
    },
    notes(ds: DatasetInfo) {
      const link = ds.bytes / opts.rateBytesPerSec;
      return [
        `target (#12): ferry send/recv within 0.5 s of "${LOOPBACK}" and faster than rsync -a (ssh); ` +
          `the bytes alone take ${link.toFixed(2)} s on the link (${(ds.bytes / 1e6).toFixed(1)} MB / ${(opts.rateBytesPerSec / 1e6).toFixed(0)} MB/s), ` +
          `one round trip ${(rtt / 1000).toFixed(2)} s`,
      ];
    },
  };
}
