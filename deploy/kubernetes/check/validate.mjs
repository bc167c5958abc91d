// Checks rendered manifests (`kubectl kustomize DIR`) against the
// Kubernetes API schema: each document by its apiVersion and kind through
// kubernetes-models' validators (generated from Kubernetes' OpenAPI: types,
// required fields, formats), then what tinyfed's deployment relies on.
//   node validate.mjs RENDERED.yaml
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const file = process.argv[2];
const docs = parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS());
const problems = [];
const byKind = {};

for (const doc of docs) {
  const [group, version] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : [null, doc.apiVersion];
  const module = `kubernetes-models/${group ? `${group}/` : ""}${version}/${doc.kind}`;
  let Model;
  try {
    Model = (await import(module))[doc.kind];
  } catch {
    problems.push(`${doc.kind} ${doc.metadata?.name}: no schema for ${doc.apiVersion} ${doc.kind}`);
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    problems.push(`${doc.kind} ${doc.metadata?.name}: ${e.message}`);
  }
  (byKind[doc.kind] ??= []).push(doc);
}

const need = (cond, what) => cond || problems.push(what);
const sets = byKind.StatefulSet ?? [];
need(sets.length >= 1, "no StatefulSet");
for (const s of sets) {
  const pod = s.spec.template;
  const c = pod.spec.containers[0];
  const name = `StatefulSet ${s.metadata.name}`;
  need(s.spec.replicas === 1, `${name}: an aggregator runs as one replica`);
  need(c.readinessProbe && c.livenessProbe, `${name}: readiness and liveness probes`);
  need(JSON.stringify(c.readinessProbe).includes('"health"'), `${name}: probes ask gRPC health`);
  need(c.resources?.limits?.memory && c.resources?.limits?.cpu, `${name}: resource limits`);
  need(pod.spec.securityContext?.runAsNonRoot === true, `${name}: runAsNonRoot`);
  need(c.securityContext?.readOnlyRootFilesystem === true, `${name}: read-only root`);
  const claims = (s.spec.volumeClaimTemplates ?? []).map((v) => v.metadata.name);
  const mounts = Object.fromEntries(c.volumeMounts.map((m) => [m.name, m.mountPath]));
  need(claims.some((n) => mounts[n] === "/var/lib/tinyfed"), `${name}: the state directory on a persistent volume`);
  const volumes = pod.spec.volumes.map((v) => v.name);
  for (const m of Object.keys(mounts)) {
    need(volumes.includes(m) || claims.includes(m), `${name}: mount ${m} has no volume`);
  }
  const secrets = pod.spec.volumes.filter((v) => v.secret).map((v) => v.secret.secretName);
  need(secrets.length >= 2, `${name}: keys and TLS from Secrets`);
  const maps = pod.spec.volumes.filter((v) => v.configMap).map((v) => v.configMap.name);
  const generated = (byKind.ConfigMap ?? []).map((m) => m.metadata.name);
  need(maps.some((m) => generated.includes(m)), `${name}: its config is a ConfigMap of the kustomization`);
  const labels = pod.metadata.labels;
  const selects = (sel) => Object.entries(sel).every(([k, v]) => labels[k] === v);
  need(selects(s.spec.selector.matchLabels), `${name}: its selector does not match its pods`);
  for (const svc of byKind.Service ?? []) {
    need(selects(svc.spec.selector), `Service ${svc.metadata.name}: selects no aggregator pod`);
  }
  for (const pdb of byKind.PodDisruptionBudget ?? []) {
    need(selects(pdb.spec.selector.matchLabels), `PodDisruptionBudget ${pdb.metadata.name}: selects no aggregator pod`);
  }
}
need((byKind.PodDisruptionBudget ?? []).length >= 1, "no PodDisruptionBudget");
need((byKind.Service ?? []).length >= 1, "no Service");

if (problems.length) {
  console.error(problems.map((p) => `FAIL: ${p}`).join("\n"));
  process.exit(1);
}
console.log(`${docs.length} objects valid against the Kubernetes schema: ` +
  Object.entries(byKind).map(([k, v]) => `${v.length} ${k}`).join(", "));
