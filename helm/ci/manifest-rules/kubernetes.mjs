// Rules on each object as Kubernetes sees it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { repoRoot } from '../lib.mjs';
import { nameOf } from './context.mjs';

/** Every object validates against its Kubernetes schema. */
export function k8sSchema({ entries }, report) {
  for (const { object, Model } of entries) {
    if (!Model) {
      report(nameOf(object), `no schema for apiVersion ${object.apiVersion} kind ${object.kind}`);
      continue;
    }
    try {
      new Model(object).validate();
    } catch (error) {
      report(nameOf(object), error.message);
    }
  }
}

/**
 * No field the Kubernetes types do not define: the objects are written out as TypeScript constants
 * of the models' interfaces and type-checked, so an unknown key is an excess-property error (the
 * JSON schemas accept unknown keys; `kubectl apply --validate=strict` would not).
 */
export function k8sNoUnknownFields({ entries }, report) {
  const typed = entries.filter((entry) => entry.modulePath);
  if (typed.length === 0) return;
  const ts = createRequire(path.join(repoRoot, 'package.json'))('typescript');
  // Inside the tools directory so `kubernetes-models` resolves from its node_modules.
  const dir = mkdtempSync(path.join(process.env.BEARER_SIDECAR_K8S_TOOLS, 'strict-'));
  try {
    const lines = [];
    const owners = [];
    typed.forEach((entry, index) => {
      lines.push(`import type { I${entry.object.kind} as T${index} } from '${entry.modulePath}';`);
      owners.push(undefined);
    });
    typed.forEach((entry, index) => {
      const body = JSON.stringify(entry.object, null, 2).split('\n');
      body[0] = `export const o${index}: T${index} = ${body[0]}`;
      body[body.length - 1] += ';';
      for (const line of body) {
        lines.push(line);
        owners.push(entry);
      }
    });
    const file = path.join(dir, 'objects.ts');
    writeFileSync(file, lines.join('\n'));
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      target: ts.ScriptTarget.ES2020,
      types: [],
    });
    for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ');
      if (!diagnostic.file) {
        report('TypeScript', message);
        continue;
      }
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
      const owner = owners[line];
      report(
        owner ? nameOf(owner.object) : 'TypeScript',
        `${message.replace(/ in type '.{200,}$/, '')} (at: ${lines[line].trim()})`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
