#!/usr/bin/env node
// Checks the HTML of paperboy's mails against the email-client support data of
// caniemail.com (the `caniemail` package) for the clients most readers use.
//
//   node check.mjs FILE.html...
//
// A feature that a counted client marks unsupported ("n") is an error, printed with its
// place and caniemail's notes, and makes the exit status 1, unless it is allow-listed below
// with the reason it is harmless (those are summed up in one line per feature). Partial
// support ("a") is a warning, summed up the same way, and does not fail. Exit status 2 means
// the check itself could not run (no file given, or one that cannot be read).

import { readFileSync } from 'node:fs';
import { caniemail, formatIssue, parseHtml, rawData } from 'caniemail';

// The clients that count: Gmail (the web app and its iOS and Android apps), Outlook
// (classic Outlook for Windows, Outlook for Mac and Outlook.com) and Apple Mail (macOS and
// iOS). Together they open most mail; the rest of caniemail's list is not checked.
const CLIENTS = [
  'gmail.desktop-webmail',
  'gmail.ios',
  'gmail.android',
  'outlook.windows',
  'outlook.macos',
  'outlook.outlook-com',
  'apple-mail.macos',
  'apple-mail.ios',
];

// Features used although some counted client does not support them. Each is progressive
// enhancement: where it is ignored the mail still reads as designed, so it is no error. The
// same feature for a client not listed with it is still an error.
const ALLOWED = {
  // The dark-mode rules. Gmail and classic Outlook drop them (or the whole query) and show
  // the light design, which is complete on its own; Apple Mail, Outlook for Mac and
  // Outlook.com apply them.
  '@media (prefers-color-scheme)': {
    clients: ['gmail.desktop-webmail', 'gmail.ios', 'gmail.android', 'outlook.windows'],
    why: 'dark-mode rules; where they are ignored the light design shows',
  },
  // Classic Outlook ignores every media query: the dark-mode rules (above) and the narrower
  // padding for phones, which a desktop client does not need.
  '@media': {
    clients: ['outlook.windows'],
    why: 'dark mode and phone padding only; desktop Outlook needs neither',
  },
  // `<meta name="color-scheme">` tells clients that the mail has a dark design of its own, so
  // that they do not invert its colours. Where it is not read nothing changes.
  'color-scheme meta tag': {
    clients: [
      'gmail.desktop-webmail',
      'gmail.ios',
      'gmail.android',
      'outlook.windows',
      'outlook.macos',
      'outlook.outlook-com',
      'apple-mail.ios',
    ],
    why: 'a dark-mode hint; where it is not read nothing changes',
  },
  // The preview line inbox lists show is hidden in the mail itself with `display: none`,
  // `max-height: 0` and `overflow: hidden`, no tricks with font size or colour (which spam
  // filters score). Classic Outlook reads neither property, but it never sees the line: it
  // sits inside `<!--[if !mso]>`, which only that client skips.
  'max-height property': {
    clients: ['outlook.windows'],
    why: 'the hidden preview line, which classic Outlook skips (<!--[if !mso]>)',
  },
  overflow: {
    clients: ['outlook.windows'],
    why: 'the hidden preview line, which classic Outlook skips (<!--[if !mso]>)',
  },
  // Rounded corners of the cards: classic Outlook draws them square.
  'border-radius': {
    clients: ['outlook.windows'],
    why: 'rounded corners; square ones in classic Outlook',
  },
  // Outlook for Mac drops the <body> element's attributes and styles. Nothing depends on
  // them: the wrapper table carries the background colour too. caniemail also counts every
  // <tbody> as a <body> (it matches tag names by substring), and the HTML serializer of the
  // CSS inliner writes <tbody> into each table.
  '<body> element': {
    clients: ['outlook.macos'],
    why: 'body styles repeated on the wrapper table; <tbody> counted as <body>',
  },
};

function allowed(title, client) {
  return ALLOWED[title]?.clients.includes(client) ?? false;
}

function where(issue) {
  const start = issue.position?.start;
  return start ? `${start.line}:${start.column}` : '-';
}

// caniemail checks the rules of a stylesheet and notes that it has an `@media` rule, but
// neither what is inside the rule nor the media features it asks for. Both are checked
// here: the inner rules as a stylesheet of their own, the features against the
// `@media (feature)` entries of the data.
const MEDIA_FEATURES = rawData.data
  .filter((f) => f.title.startsWith('@media ('))
  .map((f) => ({ title: f.title, names: [...f.title.matchAll(/\(([-a-z]+)\)/g)].map((m) => m[1]) }));

function mediaFeatureTitles(query) {
  const asked = [...query.toLowerCase().matchAll(/\(\s*([-a-z]+)\s*[:)]/g)].map((m) =>
    m[1].replace(/^(-webkit-)?(min-|max-)/, '$1'),
  );
  return MEDIA_FEATURES.filter((f) => f.names.some((n) => asked.includes(n))).map((f) => f.title);
}

function mediaRules(html) {
  const { stylesheets } = parseHtml(html);
  return stylesheets.flatMap((sheet) => (sheet.stylesheet?.rules ?? []).filter((r) => r.type === 'media'));
}

function ruleText(rule) {
  const body = (rule.declarations ?? [])
    .filter((d) => d.type === 'declaration')
    .map((d) => `${d.property}: ${d.value};`)
    .join(' ');
  return `${(rule.selectors ?? []).join(', ')} { ${body} }`;
}

function supportOf(title, client) {
  const feature = rawData.data.find((f) => f.title === title);
  const [family, platform] = client.split('.');
  const versions = feature?.stats?.[family]?.[platform];
  if (!versions) return null;
  // The last version in sorted order stands for the client today, as caniemail itself
  // decides for the features it checks.
  const latest = Object.keys(versions).sort().at(-1);
  const value = versions[latest];
  const notes = [...value.matchAll(/#(\d+)/g)].map((m) => feature.notes_by_num?.[m[1]]).filter(Boolean);
  const type = value.startsWith('n') ? 'error' : value.startsWith('a') ? 'warning' : null;
  return type && { type, issue: { title, notes } };
}

/** All problems of one document: `{ type: 'error' | 'warning', client, title, at, message }`. */
function check(html) {
  const found = [];
  const add = (type, client, issue, at) => {
    const { message } = formatIssue({ client, issue, issueType: type });
    found.push({ type, client, title: issue.title, at, message, notes: issue.notes ?? [] });
  };
  const collect = (result, at) => {
    for (const type of ['errors', 'warnings']) {
      for (const [client, issues] of result.issues[type]) {
        for (const issue of issues) add(type.slice(0, -1), client, issue, at ?? where(issue));
      }
    }
  };
  collect(caniemail({ clients: CLIENTS, html }));
  for (const media of mediaRules(html)) {
    const at = `@media ${media.media}`;
    const inner = (media.rules ?? []).filter((r) => r.type === 'rule').map(ruleText).join('\n');
    if (inner) collect(caniemail({ clients: CLIENTS, css: inner }), at);
    for (const title of mediaFeatureTitles(media.media)) {
      for (const client of CLIENTS) {
        const s = supportOf(title, client);
        if (s) add(s.type, client, s.issue, at);
      }
    }
  }
  // One line per feature, client and place, whichever way it was found.
  const seen = new Set();
  return found.filter((p) => {
    const key = `${p.type} ${p.client} ${p.title} ${p.at}`;
    return !seen.has(key) && seen.add(key);
  });
}

/** Counts of one kind of problem by feature, with the clients concerned. */
function summarize(problems) {
  const byTitle = new Map();
  for (const p of problems) {
    const entry = byTitle.get(p.title) ?? { clients: new Set(), places: new Set() };
    entry.clients.add(p.client);
    entry.places.add(p.at);
    byTitle.set(p.title, entry);
  }
  return [...byTitle].map(
    ([title, { clients, places }]) => `\`${title}\` in ${[...clients].join(', ')} (${places.size} place(s))`,
  );
}

function main(files) {
  if (files.length === 0) {
    console.error('usage: node check.mjs FILE.html...');
    return 2;
  }
  let errors = 0;
  for (const file of files) {
    let html;
    try {
      html = readFileSync(file, 'utf8');
    } catch (e) {
      console.error(`${file}: cannot read: ${e.message}`);
      return 2;
    }
    const problems = check(html);
    const failing = problems.filter((p) => p.type === 'error' && !allowed(p.title, p.client));
    const allowedOnes = problems.filter((p) => p.type === 'error' && allowed(p.title, p.client));
    const partial = problems.filter((p) => p.type === 'warning');
    for (const p of failing) {
      console.log(`${file}:${p.at}: error: ${p.message}`);
      for (const note of p.notes) console.log(`    ${note}`);
    }
    for (const line of summarize(allowedOnes)) console.log(`${file}: allowed, unsupported: ${line}`);
    for (const line of summarize(partial)) console.log(`${file}: warning, partial support: ${line}`);
    errors += failing.length;
  }
  console.log(`${errors} error(s) for ${CLIENTS.join(', ')}`);
  return errors === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
