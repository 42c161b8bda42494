// Runs the status page script against a fake DOM and one /status answer,
// then prints what the page shows as JSON. Usage: node render.js page.js status.json
'use strict';
const fs = require('fs');
const [script, statusFile] = process.argv.slice(2);
const body = fs.readFileSync(statusFile, 'utf8');

function makeEl(tag) {
  return {
    tag, children: [], className: '', hidden: false, dataset: {}, style: {}, colSpan: 1, _text: '',
    get textContent() { return this._text + this.children.map((c) => c.textContent).join(''); },
    set textContent(v) { this._text = String(v); this.children = []; },
    appendChild(c) { this.children.push(c); return c; },
    replaceChildren() { this.children = []; this._text = ''; },
  };
}
const byId = {};
global.document = {
  getElementById(id) { return byId[id] || (byId[id] = makeEl('#' + id)); },
  createElement: makeEl,
};
let polls = 0;
global.fetch = (url) => {
  polls++;
  if (url !== 'status') { throw new Error('fetched ' + url); }
  if (body === 'FAIL') { return Promise.reject(new Error('connection refused')); }
  return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve(JSON.parse(body)) });
};
const timers = [];
global.setTimeout = (fn, ms) => { timers.push(ms); return timers.length; };
global.clearTimeout = () => {};
global.AbortController = class { constructor() { this.signal = {}; } abort() {} };

new Function(fs.readFileSync(script, 'utf8'))();

setImmediate(() => {
  const cellTexts = (row) => row.children.map((c) => c.textContent);
  const out = {
    polls,
    rescheduled: timers.includes(1000),
    conn: byId.conn && byId.conn.textContent,
    error: byId.error && !byId.error.hidden ? byId.error.textContent : '',
    ringVersion: byId['ring-version'] && byId['ring-version'].textContent,
    ringCount: byId['ring-count'] && byId['ring-count'].textContent,
    ringBrokers: byId['ring-brokers'] ? byId['ring-brokers'].children.map((c) => c.textContent) : [],
    reshard: byId.reshard && byId.reshard.textContent,
    members: byId.members ? byId.members.children.map(cellTexts) : [],
    stateNode: byId['state-node'] && byId['state-node'].textContent,
    maxVersion: byId['state-max-version'] && byId['state-max-version'].textContent,
    startup: byId['state-startup'] && byId['state-startup'].textContent,
    rules: byId['state-rules'] && byId['state-rules'].textContent,
    rulesClass: byId['state-rules'] && byId['state-rules'].className,
    totalConnections: byId['total-connections'] && byId['total-connections'].textContent,
  };
  console.log(JSON.stringify(out));
});
