// Helpers for benchmarks/side_by_side.sh, run with Bun (never timed):
//
//   bun util.ts workflow SHAPE KIND N            this engine's workflow file, on stdout
//   bun util.ts check-ours N < inspect.json      "finished ENGINE_S", or "failed WHY"
//   bun util.ts check-ts N EXIT < result.json    the same for a shapes.ts run
//   bun util.ts median RUNS.ndjson CASE ENGINE   median wall seconds so far, or nothing
//   bun util.ts predict T200 T1000 N             seconds a fan-out of N would take,
//                                                extrapolated from 200 -> 1,000
//   bun util.ts report RUNS.ndjson OUT.json META.json
//                                                medians per case and engine, the
//                                                table on stdout, JSON to OUT.json
import { readFileSync, writeFileSync } from "node:fs";

const [cmd, ...args] = process.argv.slice(2);

function workflow(shape: string, kind: string, n: number) {
  const task = (i: number) => kind === "compute"
    ? { task: `t${i}`, compute: "noop" }
    : { task: `t${i}`, run: ["echo", "{}"] };
  const children = Array.from({ length: n }, (_, i) => task(i));
  const root = shape === "fanout"
    ? { parallel: children, max_concurrency: 16 }
    : { sequence: children };
  return { name: `${shape}-${kind}-${n}`, root };
}

type Inspect = {
  run?: { status?: string; created_ms?: number; finished_ms?: number; error?: unknown };
  nodes?: { state?: string }[];
};

function checkOurs(n: number, text: string): string {
  let doc: Inspect;
  try { doc = JSON.parse(text); } catch { return "failed inspect-printed-no-JSON"; }
  const status = doc.run?.status ?? "unknown";
  const done = (doc.nodes ?? []).filter((x) => x.state === "finished").length;
  if (status !== "finished") return `failed status=${status}`;
  if (done !== n) return `failed ${done}/${n}-tasks-finished`;
  const ms = (doc.run?.finished_ms ?? NaN) - (doc.run?.created_ms ?? NaN);
  return `finished ${(ms / 1000).toFixed(3)}`;
}

function checkTs(n: number, exit: number, text: string): string {
  let r: { status?: string; tasks_finished?: number; engine_s?: number; error?: string };
  try { r = JSON.parse(text); } catch { return `failed exit-${exit}-no-result`; }
  const why = r.error ? `: ${r.error}` : "";
  if (r.status !== "finished") return `failed status=${r.status}${why}`;
  if (r.tasks_finished !== n) return `failed ${r.tasks_finished}/${n}-tasks-finished${why}`;
  if (exit !== 0) return `failed exit-${exit}${why}`;
  return `finished ${(r.engine_s ?? NaN).toFixed(3)}`;
}

type Run = {
  case: string; engine: "ts" | "ours"; pass: number; ok: boolean;
  wall_s?: number; engine_s?: number; error?: string; skipped?: string;
};

const median = (xs: number[]) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

type Side = {
  runs: number; ok: number; wall_s: number | null; engine_s: number | null;
  wall_all_s: (number | undefined)[]; errors: string[]; skipped?: string;
};

const readRuns = (file: string): Run[] =>
  readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));

function report(runsFile: string, outFile: string, metaFile: string) {
  const runs = readRuns(runsFile);
  const meta = JSON.parse(readFileSync(metaFile, "utf8"));
  const cases = [...new Set(runs.map((r) => r.case))];
  const summary = cases.map((c) => {
    const side = (engine: "ts" | "ours"): Side => {
      const rs = runs.filter((r) => r.case === c && r.engine === engine);
      const ok = rs.filter((r) => r.ok);
      const skipped = rs.find((r) => r.skipped)?.skipped;
      const failed = rs.filter((r) => !r.ok && !r.skipped);
      return {
        runs: rs.filter((r) => !r.skipped).length,
        ok: ok.length,
        wall_s: failed.length ? null : median(ok.map((r) => r.wall_s!)),
        engine_s: failed.length ? null : median(ok.map((r) => r.engine_s!).filter((x) => Number.isFinite(x))),
        wall_all_s: ok.map((r) => r.wall_s),
        errors: failed.map((r) => r.error ?? "failed"),
        ...(skipped ? { skipped } : {}),
      };
    };
    const ts = side("ts"), ours = side("ours");
    const ratio = (a: number | null, b: number | null) => (a != null && b != null && b > 0 ? a / b : null);
    return { case: c, ts, ours, ratio_wall: ratio(ts.wall_s, ours.wall_s), ratio_engine: ratio(ts.engine_s, ours.engine_s) };
  });
  writeFileSync(outFile, JSON.stringify({ ...meta, cases: summary }, null, 2) + "\n");

  const sec = (x: number | null) => (x == null ? "—" : x < 10 ? x.toFixed(3) : x.toFixed(1));
  const rat = (x: number | null) => (x == null ? "—" : x >= 100 ? `${Math.round(x)}×` : `${x.toFixed(1)}×`);
  const cell = (s: Side, x: number | null) =>
    s.skipped ? "skipped" : s.errors.length ? `FAILED ${s.errors.length}/${s.runs}` : sec(x);
  const rows = [["case", "TS s", "ours s", "TS/ours", "TS engine s", "ours engine s", "TS/ours engine"]];
  for (const s of summary) {
    rows.push([s.case, cell(s.ts, s.ts.wall_s), cell(s.ours, s.ours.wall_s), rat(s.ratio_wall),
               cell(s.ts, s.ts.engine_s), cell(s.ours, s.ours.engine_s), rat(s.ratio_engine)]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) console.log(r.map((x, i) => (i === 0 ? x.padEnd(w[i]) : x.padStart(w[i]))).join("  "));
  for (const s of summary) {
    for (const [name, side] of [["TS", s.ts], ["ours", s.ours]] as const) {
      if (side.skipped) console.log(`${s.case} ${name}: skipped: ${side.skipped}`);
      for (const e of side.errors) console.log(`${s.case} ${name}: failed: ${e}`);
    }
  }
}

switch (cmd) {
  case "workflow":
    process.stdout.write(JSON.stringify(workflow(args[0], args[1], Number(args[2]))) + "\n");
    break;
  case "check-ours":
    console.log(checkOurs(Number(args[0]), await Bun.stdin.text()));
    break;
  case "check-ts":
    console.log(checkTs(Number(args[0]), Number(args[1]), await Bun.stdin.text()));
    break;
  case "median": {
    const m = median(readRuns(args[0]).filter((r) => r.case === args[1] && r.engine === args[2] && r.ok)
      .map((r) => r.wall_s!));
    if (m != null) console.log(m.toFixed(3));
    break;
  }
  case "predict": {
    const [t200, t1000, n] = args.map(Number);
    const e = Math.max(1, Math.log(t1000 / t200) / Math.log(5));
    console.log((t1000 * Math.pow(n / 1000, e)).toFixed(0));
    break;
  }
  case "report":
    report(args[0], args[1], args[2]);
    break;
  default:
    console.error("usage: bun util.ts workflow|check-ours|check-ts|median|predict|report ...");
    process.exit(4);
}
