import { describe, expect, it } from "vitest";
import { mergeMetrics } from "../../src/cluster/metrics-merge.ts";

const worker = (calls: number) => `# HELP rpc_server_duration RPC duration
# TYPE rpc_server_duration histogram
rpc_server_duration_count{rpc_method="Execute"} ${calls}
rpc_server_duration_sum{rpc_method="Execute"} ${calls * 2}
# HELP process_up Whether it is up
# TYPE process_up gauge
process_up 1
# HELP no_labels_total A counter with empty braces
# TYPE no_labels_total counter
no_labels_total{} 3
`;

describe("mergeMetrics", () => {
  it("keeps each family once and labels every sample with its worker", () => {
    expect(
      mergeMetrics([
        { worker: 1, text: worker(5) },
        { worker: 2, text: worker(7) },
      ]),
    ).toBe(`# HELP rpc_server_duration RPC duration
# TYPE rpc_server_duration histogram
rpc_server_duration_count{worker="1",rpc_method="Execute"} 5
rpc_server_duration_sum{worker="1",rpc_method="Execute"} 10
rpc_server_duration_count{worker="2",rpc_method="Execute"} 7
rpc_server_duration_sum{worker="2",rpc_method="Execute"} 14
# HELP process_up Whether it is up
# TYPE process_up gauge
process_up{worker="1"} 1
process_up{worker="2"} 1
# HELP no_labels_total A counter with empty braces
# TYPE no_labels_total counter
no_labels_total{worker="1"} 3
no_labels_total{worker="2"} 3
`);
  });

  it("a family only one worker has yet is kept with its samples; nothing from nobody", () => {
    const only = "# TYPE late gauge\nlate 2\n";
    expect(
      mergeMetrics([
        { worker: 1, text: worker(1) },
        { worker: 2, text: only },
      ]),
    ).toContain('# TYPE late gauge\nlate{worker="2"} 2\n');
    expect(mergeMetrics([])).toBe("");
  });
});
