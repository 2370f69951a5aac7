/**
 * No import cycle anywhere under src/: static imports and re-exports, `import type`, `import()`
 * and `typeof import()` types all count, since a cycle of types is still a knot in the layout.
 * Imports are read with the TypeScript parser, not a regex, so comments and strings never count.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { expect, it } from 'vitest'

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src')

/** Relative module specifiers of one file, resolved to .ts files under src/. */
function importsOf(file: string): string[] {
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const specifiers: string[] = []
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined) {
      if (ts.isStringLiteral(node.moduleSpecifier)) specifiers.push(node.moduleSpecifier.text)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments
      if (arg !== undefined && ts.isStringLiteralLike(arg)) specifiers.push(arg.text)
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument
      if (ts.isLiteralTypeNode(arg) && ts.isStringLiteral(arg.literal)) specifiers.push(arg.literal.text)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return specifiers
    .filter((s) => s.startsWith('.'))
    .map((s) => {
      const resolved = path.resolve(path.dirname(file), s).replace(/\.js$/, '.ts')
      return fs.existsSync(resolved) ? resolved : path.join(resolved.replace(/\.ts$/, ''), 'index.ts')
    })
}

function graphOf(dir: string): Map<string, string[]> {
  const files = (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.join(dir, f))
  return new Map(files.map((f) => [f, importsOf(f)]))
}

/** Every cycle met by a depth-first walk, as `a.ts -> b.ts -> a.ts` (paths relative to src/). */
function cyclesOf(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const cycles: string[] = []
  const visit = (file: string): void => {
    state.set(file, 'open')
    stack.push(file)
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') {
        cycles.push([...stack.slice(stack.indexOf(next)), next].map((f) => path.relative(src, f)).join(' -> '))
      } else if (state.get(next) === undefined) {
        visit(next)
      }
    }
    stack.pop()
    state.set(file, 'done')
  }
  for (const file of [...graph.keys()].sort()) if (state.get(file) === undefined) visit(file)
  return cycles
}

it('reads every kind of import, and finds a cycle when there is one', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-tenant-import-graph-'))
  try {
    fs.writeFileSync(path.join(dir, 'a.ts'), "// import { x } from './c.js'\nimport type { B } from './b.js'\nexport const a = 1\n")
    fs.writeFileSync(path.join(dir, 'b.ts'), "export type B = typeof import('./c.js')\n")
    fs.writeFileSync(path.join(dir, 'c.ts'), "export const c = () => import('./a.js')\nconst s = \"import('./b.js')\"\n")
    const graph = graphOf(dir)
    expect([...graph.values()].flat().map((f) => path.basename(f)).sort()).toEqual(['a.ts', 'b.ts', 'c.ts'])
    expect(cyclesOf(graph).length).toBe(1)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

it('has no import cycle under src/', () => {
  const graph = graphOf(src)
  expect(graph.size).toBeGreaterThan(30) // the walk really read src/
  expect(graph.get(path.join(src, 'doctor/runner.ts'))).toContain(path.join(src, 'doctor/checks/index.ts'))
  expect(cyclesOf(graph)).toEqual([])
})
