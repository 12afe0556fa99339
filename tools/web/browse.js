#!/usr/bin/env node
// Opens a page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) and
// prints what a test needs as one JSON object:
//   {status, errors: [console errors and page errors], figures: [{id, points}],
//    values: {tableId: {metric: value}}, cells: {id: text}, watched: {before, after}}
//   node tools/web/browse.js URL [--screenshot FILE] [--token T]
//                            [--watch ID --timeout S [--ready FILE]]
// --watch ID waits (up to S seconds) until the element #ID's data-points attribute changes: the
// page updated itself as new results arrived. --token sends "Authorization: Bearer T".
'use strict';
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);
const url = args[0];
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const out = { status: 0, errors: [], figures: [], values: {}, cells: {} };
  try {
    const headers = opt('--token') ? { Authorization: `Bearer ${opt('--token')}` } : {};
    const context = await browser.newContext({ extraHTTPHeaders: headers, ignoreHTTPSErrors: true,
      viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') out.errors.push(m.text()); });
    page.on('pageerror', (e) => out.errors.push(String(e)));
    const response = await page.goto(url, { waitUntil: 'load' });
    out.status = response ? response.status() : 0;
    const read = () => page.evaluate(() => {
      const r = { figures: [], values: {}, cells: {} };
      document.querySelectorAll('svg.chart').forEach((s) =>
        r.figures.push({ id: s.id, points: Number(s.getAttribute('data-points')) }));
      document.querySelectorAll('[data-metric]').forEach((td) => {
        const table = (td.closest('table') || {}).id || '';
        r.values[table] = r.values[table] || {};
        const v = td.getAttribute('data-value');
        r.values[table][td.getAttribute('data-metric')] = v === 'null' ? null : Number(v);
      });
      document.querySelectorAll('[data-cell]').forEach((e) => {
        r.cells[e.getAttribute('data-cell')] = e.textContent.trim();
      });
      return r;
    });
    Object.assign(out, await read());
    const watch = opt('--watch');
    if (watch) {
      const before = await page.getAttribute(`#${watch}`, 'data-points');
      if (opt('--ready')) require('fs').writeFileSync(opt('--ready'), 'watching\n');
      const deadline = Date.now() + 1000 * Number(opt('--timeout') || 30);
      let after = before;
      while (after === before && Date.now() < deadline) {
        await page.waitForTimeout(250);
        after = await page.getAttribute(`#${watch}`, 'data-points').catch(() => before);
      }
      out.watched = { before: Number(before), after: Number(after) };
      Object.assign(out, await read());
    }
    if (opt('--screenshot')) await page.screenshot({ path: opt('--screenshot'), fullPage: true });
  } catch (e) {
    out.errors.push(`browse.js: ${e}`);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})();
