#!/usr/bin/env bash
# The operator scenarios of operator/test/reconcile.test.ts on a real kind
# cluster: CRDs and charts installed with helm, the gateway as a hostNetwork
# DaemonSet, the operator as a Deployment, the seed README's kube-dns
# VirtualService applied unchanged.
#
# Needs: docker, kind, kubectl, helm, curl (and Node.js/npm to build).
# Usage (from the repository root):  bash operator/e2e/run-kind.sh
#   KEEP=1          keep the cluster afterwards
#   CLUSTER=name    kind cluster name (default l7mp-e2e)
#   SKIP_BUILD=1    reuse l7mp/gateway:local and l7mp/operator:local
set -euo pipefail
CLUSTER=${CLUSTER:-l7mp-e2e}
NS=l7mp
HERE=$(cd "$(dirname "$0")" && pwd)
for b in docker kind kubectl helm curl; do command -v "$b" >/dev/null || { echo "missing $b" >&2; exit 2; }; done

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; kubectl -n "$NS" logs deploy/operator-l7mp-operator --tail=100 >&2 || true; exit 1; }
cleanup() {
  [ -n "${PF_PID:-}" ] && kill "$PF_PID" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  step "build images"
  npm run build
  bash scripts/build-images.sh
  bash operator/e2e/build-operator-image.sh
fi

step "cluster"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
for img in l7mp/gateway:local l7mp/operator:local; do kind load docker-image --name "$CLUSTER" "$img"; done
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
kubectl -n "$NS" create secret generic l7mp-token --from-literal=token="$TOKEN" --dry-run=client -o yaml | kubectl apply -f -

step "charts"
# The images were built and loaded here as :local (the charts default to their appVersion tag).
helm upgrade --install operator charts/l7mp-operator -n "$NS" --set image.tag=local --set gateway.token.existingSecret=l7mp-token --wait
helm upgrade --install ingress charts/l7mp-ingress -n "$NS" --set image.tag=local \
  --set controller.address=0.0.0.0 --set controller.token.existingSecret=l7mp-token
kubectl wait --for=condition=Established crd/virtualservices.l7mp.io crd/targets.l7mp.io crd/rules.l7mp.io --timeout=60s

step "readiness waits for the operator: each gateway is ready once the operator has applied its (still empty) configuration"
kubectl -n "$NS" rollout status ds/ingress-l7mp-ingress --timeout=120s || fail "gateways not ready"
kubectl -n "$NS" scale deploy/operator-l7mp-operator --replicas=0
kubectl -n "$NS" wait --for=delete pod -l app.kubernetes.io/name=l7mp-operator --timeout=60s
kubectl -n "$NS" delete pod -l app=l7mp-ingress --wait=true
sleep 10
READY=$(kubectl -n "$NS" get ds ingress-l7mp-ingress -o jsonpath='{.status.numberReady}')
[ "${READY:-0}" = 0 ] || fail "a restarted gateway was ready without the operator"
kubectl -n "$NS" scale deploy/operator-l7mp-operator --replicas=1
kubectl -n "$NS" rollout status ds/ingress-l7mp-ingress --timeout=120s || fail "gateways not ready once the operator is back"

step "kube-dns VirtualService from the seed README, unchanged"
kubectl apply -n default -f "$HERE/manifests/kube-dns-vsvc.yaml"
kubectl -n default wait --for=condition=Ready vsvc/kube-dns-vsvc --timeout=90s || fail "kube-dns-vsvc not Ready"
kubectl -n "$NS" rollout status ds/ingress-l7mp-ingress --timeout=90s || fail "gateways did not become ready"
NODE_IP=$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
kubectl run dns-probe --rm -i --restart=Never --image=busybox:1.36 -- \
  nslookup -port=5053 kubernetes.default.svc.cluster.local "$NODE_IP" | tee /dev/stderr | grep -q 'Address' || fail "no DNS answer through the gateway on $NODE_IP:5053"

step "REST view of a gateway (port-forward, bearer token)"
POD=$(kubectl -n "$NS" get pod -l app=l7mp-ingress -o jsonpath='{.items[0].metadata.name}')
kubectl -n "$NS" port-forward "pod/$POD" 21234:1234 >/dev/null 2>&1 & PF_PID=$!
for _ in $(seq 50); do curl -sf -H "Authorization: Bearer $TOKEN" http://127.0.0.1:21234/api/v1/admin >/dev/null && break; sleep 0.2; done
api() { curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:21234$1"; }
LISTENER=%2Fl7mp.io%2Fv1%2FVirtualService%2Fdefault%2Fkube-dns-vsvc
api "/api/v1/listeners/$LISTENER" | grep -q '"port": 5053' || fail "listener on 5053 missing"

step "a rule change keeps the listener (no delete and re-add)"
kubectl -n default patch vsvc kube-dns-vsvc --type=json -p='[{"op":"add","path":"/spec/listener/rules/0/action/route/retry","value":{"retry_on":"always","num_retries":2}}]'
for _ in $(seq 60); do api /api/v1/routes | grep -q '"retry_on": "always"' && break; sleep 0.5; done
api /api/v1/routes | grep -q '"retry_on": "always"' || fail "rule change not applied"
kubectl run dns-probe2 --rm -i --restart=Never --image=busybox:1.36 -- \
  nslookup -port=5053 kubernetes.default.svc.cluster.local "$NODE_IP" | grep -q 'Address' || fail "no DNS answer after the change"

step "a restarted gateway pod gets its configuration back (and is ready only then)"
kill "$PF_PID"; PF_PID=
kubectl -n "$NS" delete pod "$POD" --wait=true
kubectl -n "$NS" rollout status ds/ingress-l7mp-ingress --timeout=120s || fail "restarted gateway not ready"
POD=$(kubectl -n "$NS" get pod -l app=l7mp-ingress -o jsonpath='{.items[0].metadata.name}')
kubectl -n "$NS" port-forward "pod/$POD" 21234:1234 >/dev/null 2>&1 & PF_PID=$!
for _ in $(seq 50); do api /api/v1/admin >/dev/null && break; sleep 0.2; done
api "/api/v1/listeners/$LISTENER" | grep -q '"port": 5053' || fail "restarted gateway lacks the listener"

step "a gateway rejecting a change: Degraded with its error"
kubectl apply -n default -f - <<YAML
apiVersion: l7mp.io/v1
kind: VirtualService
metadata: { name: clash }
spec:
  selector: { matchLabels: { app: l7mp-ingress } }
  listener:
    spec: { TCP: { port: 1234 } }
    rules: [ { action: { route: { destination: { spec: { TCP: { port: 1 } }, endpoints: [ { spec: { address: 127.0.0.1 } } ] } } } } ]
YAML
kubectl -n default wait --for=condition=Degraded vsvc/clash --timeout=60s || fail "clash not Degraded"
kubectl -n default get vsvc clash -o jsonpath='{.status.conditions[?(@.type=="Degraded")].message}' | grep -q BIND_FAILED || fail "Degraded without the gateway's error"

step "delete: finalizer released after cleanup"
kubectl -n default delete vsvc clash kube-dns-vsvc --timeout=60s
api "/api/v1/listeners/$LISTENER" >/dev/null && fail "listener still there after delete"

echo; echo "e2e passed"
