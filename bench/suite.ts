/**
 * A suite: which tools race on which datasets, and against whom they are compared.
 * See the top of bench/run.ts for how to add one or add a tool to one.
 */
import type { DatasetInfo } from './datasets.js';
import type { SuiteContext, Tool } from './tools.js';

export interface Suite {
  /** Unique name, shown in tables and JSON. */
  name: string;
  /** What `--suite` selects; several suites may share a group ('network' + 'network-noop'). */
  group: string;
  title: string;
  /** Names of the tools every other tool's time is divided by (one ratio column each). */
  references: string[];
  /** 'fresh': the destination is removed before each run. 'uptodate': it is seeded once
   *  (cp -a, untimed) and the timed run is a re-sync that should find nothing to do. */
  destination: 'fresh' | 'uptodate';
  /** Dataset names used unless `--dataset` overrides. */
  datasets(opts: { quick: boolean; full: boolean }): string[];
  /** The tools; may start shared helpers (sshd, proxy) and register their cleanup on ctx. */
  tools(ctx: SuiteContext): Promise<Tool[]>;
  /** Per-run timeout; default 30 min. A tool that times out is not run again on that dataset. */
  runTimeoutMs?: number;
  /** Per-run timeout under --quick; default runTimeoutMs. */
  quickRunTimeoutMs?: number;
  /** Extra lines printed under the dataset's table (e.g. a target line). */
  notes?(dataset: DatasetInfo): string[];
}

/**
 * A suite that is not a tool race (e.g. a micro-benchmark of the record layer): it
 * runs itself and hands back lines to print and a value for the JSON file.
 */
export interface StandaloneSuite {
  name: string;
  group: string;
  title: string;
  runStandalone(ctx: SuiteContext): Promise<{ lines: string[]; markdown?: string; json: unknown }>;
}

export type AnySuite = Suite | StandaloneSuite;

export function isStandalone(s: AnySuite): s is StandaloneSuite {
  return typeof (s as StandaloneSuite).runStandalone === 'function';
}
