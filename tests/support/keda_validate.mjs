// Validates KEDA objects (a JSON array on stdin) with the models generated from
// KEDA's API types, published on npm as @kubernetes-models/keda (pinned in
// package.json). Prints a JSON array of problems, one string each; [] when valid.
//
// The models check types and required fields but let unknown fields through,
// which the API server would reject (kubectl's strict field validation). So the
// fields of every KEDA type are also read from the package's type declarations,
// and any other field is a problem. Types from other packages (ObjectMeta, the
// HPA behavior) are not walked here; the Python side validates the behavior.
import { readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const PACKAGE = "@kubernetes-models/keda";
const root = dirname(createRequire(import.meta.url).resolve(`${PACKAGE}/package.json`));

// Exported type name -> { field: declared type } for every interface of the package.
function declaredFields() {
  const types = {};
  for (const group of ["keda.sh", "eventing.keda.sh"]) {
    for (const version of readdirSync(join(root, group), { withFileTypes: true })) {
      if (!version.isDirectory()) continue;
      const folder = join(root, group, version.name);
      for (const file of readdirSync(folder).filter((f) => f.endsWith(".d.ts"))) {
        const text = readFileSync(join(folder, file), "utf8");
        const local = {};
        for (const [, name, body] of text.matchAll(/export interface (\w+)[^{]*\{\n([\s\S]*?)\n\}/g)) {
          local[name] = Object.fromEntries(
            [...body.matchAll(/^ {4}"([^"]+)"\??: (.+?);?$/gm)].map(([, field, type]) => [field, type]));
        }
        for (const [name, fields] of Object.entries(local)) types[name] = fields;
        for (const [, name, alias] of text.matchAll(/export type \{ (\w+) as (\w+)/g)) {
          if (local[name]) types[alias] = local[name];
        }
      }
    }
  }
  return types;
}

function unknownFields(value, type, path, types, problems) {
  const element = /^Array<(\w+)>$/.exec(type);
  if (element && Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, element[1], `${path}/${i}`, types, problems));
    return;
  }
  const fields = types[type];
  if (!fields || value === null || typeof value !== "object") return;
  for (const [key, child] of Object.entries(value)) {
    if (!(key in fields)) problems.push(`${path}/${key} is not a field of ${type.replace(/^IComGithubKedacoreKedaV2Apis/, "")}`);
    else unknownFields(child, fields[key], `${path}/${key}`, types, problems);
  }
}

const types = declaredFields();
const objects = JSON.parse(readFileSync(0, "utf8"));
const problems = [];
for (const obj of objects) {
  const [group, version] = String(obj.apiVersion).split("/");
  const where = `${obj.apiVersion} ${obj.kind} ${obj.metadata?.namespace ?? ""}/${obj.metadata?.name}`;
  let model;
  try {
    model = await import(`${PACKAGE}/${group}/${version}/${obj.kind}`);
  } catch {
    problems.push(`${where}: no KEDA model for this apiVersion and kind`);
    continue;
  }
  try {
    new model[obj.kind](obj).validate();
  } catch (err) {
    problems.push(`${where}: ${err.message}`);
  }
  const unknown = [];
  unknownFields(obj, `I${obj.kind}`, "data", types, unknown);
  problems.push(...unknown.map((problem) => `${where}: ${problem}`));
}
process.stdout.write(JSON.stringify(problems));
