/**
 * `limits`: the physical limits on this machine, so a ratio to a peer is never
 * taken for a floor. For each dataset, cold cache: reading every byte once (`tar c`
 * of the tree into a pipe, the simplest complete read; GNU tar does not read at all
 * when its output is /dev/null, hence the `cat`). Then, once: loopback TCP
 * throughput (`dd` of 2 GiB of zeros through `nc`) and AES-128-GCM on one core
 * (`openssl speed -evp aes-128-gcm`, 16 KiB blocks: the record size).
 * For a no-op re-run, whose work is metadata and start-up: the cold lstat of every
 * entry of each dataset (`find -printf` of size and mtime), and the start of the
 * programs themselves (`node -e 0`, `ferry --version`, `rsync --version`) with the
 * page cache dropped and warm: Node's own start is a floor no JavaScript tool gets under.
 * For big files over loopback, where both ends share one disk: direct reads of the
 * big dataset, direct writes of as many bytes, and both at once (diskRows).
 * Medians of `--runs` runs, wall seconds and machine-wide CPU seconds.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ensureDataset } from '../datasets.js';
import { markdownTable, median, textTable } from '../stats.js';
import type { StandaloneSuite } from '../suite.js';
import { FERRY_BIN, dropCaches, machineCpuSeconds, which, type SuiteContext } from '../tools.js';
import { freePort } from '../../test/support/sshd.js';

function timed(script: string): { s: number; cpu: number } {
  const c0 = (machineCpuSeconds() ?? 0);
  const t0 = performance.now();
  const r = spawnSync('/bin/bash', ['-c', `set -o pipefail; ${script}`], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${script}: ${r.stderr.trim().split('\n')[0] ?? `exit ${r.status}`}`);
  return { s, cpu: (machineCpuSeconds() ?? 0) - c0 };
}

/** `script` `runs` times, the page cache dropped before each when `cold`; `cold` in the result: every drop succeeded. */
async function repeat(runs: number, cold: boolean, script: string): Promise<{ seconds: number[]; cpuSeconds: number[]; cold: boolean }> {
  const seconds: number[] = [];
  const cpuSeconds: number[] = [];
  let dropped = cold;
  for (let i = 0; i < runs; i++) {
    if (cold) dropped = (await dropCaches()) && dropped;
    const r = timed(script);
    seconds.push(r.s);
    cpuSeconds.push(r.cpu);
  }
  return { seconds, cpuSeconds, cold: dropped };
}

/**
 * The disk under a loopback transfer of big files, where both ends share it: the
 * dataset's files read with O_DIRECT (`dd iflag=direct`, 1 MiB at a time, one file
 * after another), as many bytes written with O_DIRECT into a scratch file beside the
 * destinations, and both at once. A transfer that writes as it reads (ferry's
 * direct I/O) runs at the both-at-once rate; one that leaves its writes in the page
 * cache until the final `sync` (cp, uring-sync) has the disk read alone, then write alone.
 */
async function diskRows(runs: number, ctx: SuiteContext, json: Record<string, unknown>): Promise<string[][]> {
  const name = ctx.quick ? 'big_quick' : 'big';
  const ds = await ensureDataset(name, { full: ctx.full, log: (l) => ctx.log(`   ${l}`) });
  const mib = Math.ceil(ds.bytes / 2 ** 20);
  const scratch = join(ctx.workDir, 'limits-disk-write');
  const read = `find '${ds.dir}' -type f | while read -r f; do dd if="$f" of=/dev/null bs=1M iflag=direct status=none; done`;
  const write = `dd if=/dev/zero of='${scratch}' bs=1M count=${mib} oflag=direct status=none`;
  const cases: Array<[string, string, string]> = [
    ['read', `direct read of ${name}'s files (dd iflag=direct, 1 MiB)`, read],
    ['write', `direct write of as many bytes (dd oflag=direct, 1 MiB)`, write],
    ['both', 'both at once: the one disk both ends of a loopback transfer share', `{ ${read}; } & r=$!; { ${write}; } & w=$!; wait $r && wait $w`],
  ];
  const rows: string[][] = [];
  try {
    for (const [key, label, script] of cases) {
      const seconds: number[] = [];
      const cpuSeconds: number[] = [];
      let cold = true;
      for (let i = 0; i < runs; i++) {
        rmSync(scratch, { force: true }); // outside the clock: freeing the last run's extents
        cold = (await dropCaches()) && cold;
        const r = timed(script);
        seconds.push(r.s);
        cpuSeconds.push(r.cpu);
      }
      json[`disk ${key} ${name}`] = { seconds, cpuSeconds, cold, bytes: ds.bytes };
      const s = median(seconds);
      rows.push([`${cold ? 'cold ' : ''}${label}`, s.toFixed(2), (ds.bytes / 1e6 / s).toFixed(0), median(cpuSeconds).toFixed(2)]);
    }
  } finally {
    rmSync(scratch, { force: true });
  }
  return rows;
}

export function makeLimitsSuite(runs: number): StandaloneSuite {
  return {
    name: 'limits',
    group: 'limits',
    title: 'physical limits: cold read of each dataset, the disk read and written at once, loopback TCP, AES-GCM on one core',
    async runStandalone(ctx) {
      const rows: string[][] = [['what', 'median s', 'MB/s', 'CPU s']];
      const json: Record<string, unknown> = {};
      const names = ctx.quick ? ['ml_small', 'big_quick'] : ['ml_small', 'ml_large', 'ml_images', 'big'];
      for (const name of names) {
        const ds = await ensureDataset(name, { full: ctx.full, log: (l) => ctx.log(`   ${l}`) });
        const secs: number[] = [];
        const cpus: number[] = [];
        for (let i = 0; i < runs; i++) {
          await dropCaches();
          const r = timed(`tar cf - -C '${ds.dir}' . | cat > /dev/null`);
          secs.push(r.s);
          cpus.push(r.cpu);
        }
        const s = median(secs);
        json[`read ${name}`] = { seconds: secs, cpuSeconds: cpus, bytes: ds.bytes };
        rows.push([`cold read of ${name} (${ds.files.toLocaleString('en-US')} files, ${(ds.bytes / 1e6).toFixed(0)} MB)`, s.toFixed(2), (ds.bytes / 1e6 / s).toFixed(0), median(cpus).toFixed(2)]);
        const st = await repeat(runs, true, `find '${ds.dir}' -printf '%s %T@\\n' > /dev/null`);
        json[`lstat ${name}`] = st;
        rows.push([`${st.cold ? 'cold ' : ''}lstat of every entry of ${name} (find -printf size, mtime)${st.cold ? '' : ', warm: the page cache could not be dropped'}`, median(st.seconds).toFixed(2), '—', median(st.cpuSeconds).toFixed(2)]);
      }
      const programs: Array<[string, string]> = [
        ['node -e 0', 'node -e 0'],
        ['ferry --version', `'${FERRY_BIN}' --version`],
        ...(which('rsync') ? [['rsync --version', 'rsync --version'] as [string, string]] : []),
      ];
      for (const cold of [true, false]) {
        for (const [label, script] of programs) {
          if (!cold) timed(`${script} > /dev/null`);
          const r = await repeat(runs, cold, `${script} > /dev/null`);
          json[`start ${label}${cold ? ' cold' : ''}`] = r;
          rows.push([`start of ${label}, ${r.cold ? 'page cache dropped' : cold ? 'warm (the page cache could not be dropped)' : 'warm'}`, median(r.seconds).toFixed(3), '—', median(r.cpuSeconds).toFixed(3)]);
        }
      }
      if (which('dd')) rows.push(...(await diskRows(runs, ctx, json)));
      if (which('nc') && which('dd')) {
        const bytes = 2 * 1024 ** 3;
        const secs: number[] = [];
        const cpus: number[] = [];
        for (let i = 0; i < runs; i++) {
          const port = await freePort();
          const r = timed(`(nc -l -s 127.0.0.1 -p ${port} > /dev/null &) ; sleep 0.3; dd if=/dev/zero bs=1M count=2048 status=none | nc -N 127.0.0.1 ${port}`);
          secs.push(r.s - 0.3);
          cpus.push(r.cpu);
        }
        const s = median(secs);
        json['loopback tcp'] = { seconds: secs, cpuSeconds: cpus, bytes };
        rows.push(['loopback TCP, 2 GiB through nc', s.toFixed(2), (bytes / 1e6 / s).toFixed(0), median(cpus).toFixed(2)]);
      }
      if (which('openssl')) {
        const r = spawnSync('openssl', ['speed', '-evp', 'aes-128-gcm', '-seconds', '2', '-bytes', '16384'], { encoding: 'utf8' });
        const m = /AES-128-GCM\s+([\d.]+)k/.exec(r.stdout ?? '');
        if (m) {
          const mbps = (Number(m[1]) * 1000) / 1e6;
          json['aes-128-gcm'] = { mbPerSec: mbps };
          rows.push(['AES-128-GCM, 16 KiB records, one core (openssl speed)', '—', mbps.toFixed(0), '—']);
        }
      }
      return { lines: [textTable(rows)], markdown: markdownTable(rows), json };
    },
  };
}
