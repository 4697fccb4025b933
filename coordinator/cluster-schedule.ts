/**
 * Run work items at once within two limits: at most `overall` in all, and at most
 * `perAgent` touching any one agent (an item names the agents it touches: a guest's
 * set-up touches its storage server, its dom0 and itself). Items start in their order
 * as far as the limits allow: one waiting for a busy agent does not hold back one behind
 * it whose agents are free. `work` errors are the caller's to catch: one that throws
 * stops nothing else, and the first error is thrown once every item has finished.
 * @throws the first error of `work`, after all items are done.
 */
export async function runLimited<T>(
  items: readonly T[],
  limits: { overall: number; perAgent: number },
  agentsOf: (item: T) => readonly string[],
  work: (item: T) => Promise<void>,
): Promise<void> {
  const busy = new Map<string, number>();
  const waiting = items.map((item) => ({ item, agents: [...new Set(agentsOf(item))] }));
  let running = 0;
  let failure: { err: unknown } | undefined;
  await new Promise<void>((resolve) => {
    const pump = () => {
      for (let i = 0; i < waiting.length && running < limits.overall; ) {
        const next = waiting[i]!;
        if (next.agents.some((a) => (busy.get(a) ?? 0) >= limits.perAgent)) {
          i++;
          continue;
        }
        waiting.splice(i, 1);
        running++;
        for (const a of next.agents) busy.set(a, (busy.get(a) ?? 0) + 1);
        void Promise.resolve()
          .then(() => work(next.item))
          .catch((err: unknown) => {
            failure ??= { err };
          })
          .finally(() => {
            running--;
            for (const a of next.agents) busy.set(a, busy.get(a)! - 1);
            pump();
          });
      }
      if (running === 0 && waiting.length === 0) resolve();
    };
    pump();
  });
  if (failure) throw failure.err;
}
