// Runs one benchmark shape on the TypeScript Smithers engine
// (npm `smithers-orchestrator`) under Bun, for benchmarks/side_by_side.sh.
//
//   bun shapes.ts SHAPE KIND N DB_FILE RESULT_FILE
//
// SHAPE: fanout (N tasks in one <Parallel maxConcurrency={16}>) or chain
// (N tasks in one <Sequence>). KIND: compute (a function returning {i}) or
// cmd (a function that spawns `echo {}` and returns its parsed stdout; the
// engine has no command tasks of its own). The package is loaded from
// $SMITHERS_TS_DIR/node_modules (no node_modules next to this file), and
// its own copies of zod and effect are used.
//
// Writes one JSON object to RESULT_FILE: status, tasks finished,
// engine_s (runWorkflow from call to result), import_s (loading the
// package), then exits: the engine keeps the process alive after a run.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const [shape, kind, nArg, dbPath, resultFile] = process.argv.slice(2);
const n = Number(nArg);
if (!["fanout", "chain"].includes(shape) || !["compute", "cmd"].includes(kind) ||
    !Number.isInteger(n) || n < 1 || !dbPath || !resultFile) {
  console.error("usage: bun shapes.ts fanout|chain compute|cmd N DB_FILE RESULT_FILE");
  process.exit(4);
}
const tsDir = process.env.SMITHERS_TS_DIR;
if (!tsDir) {
  console.error("shapes.ts: SMITHERS_TS_DIR is not set");
  process.exit(4);
}

const result: Record<string, unknown> = { shape, kind, n, status: "error" };
function finish(code: number): never {
  writeFileSync(resultFile, JSON.stringify(result) + "\n");
  process.exit(code);
}

try {
  const t0 = performance.now();
  const pkgDir = join(tsDir, "node_modules", "smithers-orchestrator");
  const smithersMod = await import(Bun.resolveSync("smithers-orchestrator", tsDir));
  const { jsx } = await import(Bun.resolveSync("smithers-orchestrator/jsx-runtime", tsDir));
  const { z } = await import(Bun.resolveSync("zod", pkgDir));
  const { Effect } = await import(Bun.resolveSync("effect", pkgDir));
  const { createSmithers, runWorkflow } = smithersMod;
  result.import_s = (performance.now() - t0) / 1000;

  const api = createSmithers({ out: z.object({ i: z.number() }) }, { dbPath });
  const { Workflow, Task, Parallel, Sequence, smithers, outputs } = api;

  const body = kind === "compute"
    ? (i: number) => () => ({ i })
    : (i: number) => async () => {
        const p = Bun.spawn(["echo", "{}"], { stdout: "pipe" });
        const text = await new Response(p.stdout).text();
        if ((await p.exited) !== 0) throw new Error("echo failed");
        return { ...JSON.parse(text), i };
      };
  const tasks = () => Array.from({ length: n }, (_, i) =>
    jsx(Task, { id: `t${i}`, output: outputs.out, children: body(i) }, `t${i}`));
  const root = () => shape === "fanout"
    ? jsx(Parallel, { maxConcurrency: 16, children: tasks() })
    : jsx(Sequence, { children: tasks() });
  const workflow = smithers(() => jsx(Workflow, { name: `${shape}-${kind}-${n}`, children: root() }));

  let finished = 0;
  const t1 = performance.now();
  const r = await Effect.runPromise(runWorkflow(workflow, {
    input: {},
    onProgress: (e: { type?: string }) => { if (e?.type === "NodeFinished") finished++; },
  }));
  result.engine_s = (performance.now() - t1) / 1000;
  result.status = r.status;
  result.tasks_finished = finished;
  if (r.error) result.error = String((r.error as { message?: string }).message ?? JSON.stringify(r.error)).slice(0, 500);
  finish(r.status === "finished" && finished === n ? 0 : 1);
} catch (err) {
  result.error = String((err as Error)?.stack ?? err).slice(0, 1000);
  finish(1);
}
