// The status the operator writes on each resource: Ready and Degraded
// conditions (Kubernetes' condition shape) and which gateways failed and why.
//   Ready=True     every selected gateway has the resource's objects
//   Degraded=True  at least one selected gateway rejected them or could not be
//                  reached; the message quotes the gateway's error
// A resource that selects no gateway is neither (reason NoMatchingGateways).

export interface GatewayFailure {
  pod: string;
  error: string;
}

export interface Condition {
  type: 'Ready' | 'Degraded';
  status: 'True' | 'False';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface ResourceStatus {
  observedGeneration?: number;
  gateways: { selected: string[]; applied: string[]; failed: GatewayFailure[] };
  conditions: Condition[];
}

export interface Outcome {
  invalid: string[];
  selected: string[];
  applied: string[];
  failed: GatewayFailure[];
}

const MAX_MESSAGE = 2000;

export function buildStatus(o: Outcome, generation: number | undefined, previous: ResourceStatus | undefined, now: string): ResourceStatus {
  let ready: Omit<Condition, 'lastTransitionTime' | 'type'>;
  let degraded: Omit<Condition, 'lastTransitionTime' | 'type'>;
  if (o.invalid.length > 0) {
    const message = `invalid spec: ${o.invalid.join('; ')}`.slice(0, MAX_MESSAGE);
    ready = { status: 'False', reason: 'InvalidSpec', message };
    degraded = { status: 'True', reason: 'InvalidSpec', message };
  } else if (o.selected.length === 0) {
    ready = { status: 'False', reason: 'NoMatchingGateways', message: 'the selector matches no running gateway pod' };
    degraded = { status: 'False', reason: 'NoMatchingGateways', message: 'the selector matches no running gateway pod' };
  } else if (o.failed.length > 0) {
    const message = o.failed.map((f) => `${f.pod}: ${f.error}`).join('; ').slice(0, MAX_MESSAGE);
    ready = { status: 'False', reason: 'GatewayRejected', message: `${o.failed.length} of ${o.selected.length} gateways failed: ${message}`.slice(0, MAX_MESSAGE) };
    degraded = { status: 'True', reason: 'GatewayRejected', message };
  } else {
    ready = { status: 'True', reason: 'Applied', message: `applied on ${o.applied.length} gateways` };
    degraded = { status: 'False', reason: 'Applied', message: 'no gateway reported an error' };
  }
  const cond = (type: Condition['type'], c: typeof ready): Condition => {
    const prev = previous?.conditions?.find((x) => x.type === type);
    const lastTransitionTime = prev && prev.status === c.status ? prev.lastTransitionTime : now;
    return { type, ...c, ...(generation !== undefined ? { observedGeneration: generation } : {}), lastTransitionTime };
  };
  return {
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    gateways: { selected: [...o.selected].sort(), applied: [...o.applied].sort(), failed: [...o.failed].sort((a, b) => (a.pod < b.pod ? -1 : 1)) },
    conditions: [cond('Ready', ready), cond('Degraded', degraded)],
  };
}
