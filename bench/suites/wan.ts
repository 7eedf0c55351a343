/**
 * `wan`: the same loopback transfer through the delaying proxy
 * (test/support/delay-proxy.ts) at 40 ms round trip and a fixed link rate, so a
 * protocol that pays a round trip per file shows it (the SFTP seed's lesson).
 * The proxy sits in front of sshd; ssh-based tools just connect to its port.
 *
 * The target line is what a protocol that costs about one round trip per session
 * should reach: 1 s (session set-up, with margin) + bytes / link rate.
 */
import type { Suite } from '../suite.js';
import type { DatasetInfo } from '../datasets.js';
import { startProxy } from '../../test/support/delay-proxy.js';
import { endpointOf, ferryNetworkTools, rsyncSshTool, scpTool, suiteSshd, type SshEndpoint } from './network.js';

export interface WanOptions {
  /** One-way delay; the round trip is twice this. */
  delayMs: number;
  /** Link rate per direction per connection, bytes/s. */
  rateBytesPerSec: number;
}

export function makeWanSuite(opts: WanOptions): Suite {
  return {
    name: 'wan',
    group: 'wan',
    title: `through a delaying proxy: ${2 * opts.delayMs} ms RTT, ${(opts.rateBytesPerSec / 1e6).toFixed(0)} MB/s link, fresh destination, cold cache`,
    references: ['rsync -a (ssh)'],
    destination: 'fresh',
    datasets: ({ quick }) => (quick ? ['ml_tiny'] : ['ml_small']),
    // scp (SFTP) pays several round trips per file: ~0.2 s a file at 40 ms (measured:
    // 212 s for ml_tiny's 1,000 files), so it would need ~35 min for ml_small. It is
    // cut off and reported as a lower bound ("> 300 s").
    runTimeoutMs: 5 * 60_000,
    quickRunTimeoutMs: 30_000,
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
      return [...ferryNetworkTools({ viaProxy }), rsyncSshTool(ep), scpTool(ep)];
    },
    notes(ds: DatasetInfo) {
      const target = 1 + ds.bytes / opts.rateBytesPerSec;
      return [`target: 1 s + ${(ds.bytes / 1e6).toFixed(1)} MB / ${(opts.rateBytesPerSec / 1e6).toFixed(0)} MB/s = ${target.toFixed(2)} s`];
    },
  };
}
