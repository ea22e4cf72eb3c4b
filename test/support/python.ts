// Python grpcio clients the e2e tests run against the server. global-setup.ts has checked
// that Debian's interpreter has grpc and protobuf and that protoc is there.
import { runProcess } from "./server-process.ts";

/** Debian's interpreter carries python3-grpcio; the python3 first on PATH (pyenv, a venv) may not. */
const PYTHON = "/usr/bin/python3";

/**
 * Runs a Python script to completion with `pythonPath` (generated _pb2 modules) on its path,
 * in a process group of its own (killed with the test if the test fails or times out),
 * without blocking the test's event loop. Its stdout; throws with its stderr if it fails.
 */
export async function runPython(args: string[], pythonPath: string): Promise<string> {
  const { code, stdout, stderr } = await runProcess(PYTHON, args, { PYTHONPATH: pythonPath });
  if (code !== 0) throw new Error(`${PYTHON} ${args.join(" ")} exited with ${code}:\n${stderr}`);
  return stdout;
}
