// The status page's script: reads /ui/status.json and the JSON API, draws the figures, and runs
// the operator's actions (retry, resubmit). Every string from outside is set as text
// (textContent, setAttribute), never parsed as markup. The admin token, when the service has
// one, lives in this tab's session storage and goes out as a bearer token: no cookie is used.
'use strict';

(() => {
  const TOKEN_KEY = 'vod-purge-admin-token';
  const REFRESH_MS = 5000;
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  // An element with attributes and children (strings become text nodes).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === 'class') node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(path, options) {
    const headers = { Accept: 'application/json' };
    const current = token();
    if (current) headers.Authorization = 'Bearer ' + current;
    const response = await fetch(path, { ...options, headers, credentials: 'omit', cache: 'no-store' });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      const detail = body && body.error ? body.error : { code: 'http_' + response.status, message: response.statusText };
      const error = new Error(detail.message);
      error.status = response.status;
      error.code = detail.code;
      throw error;
    }
    return body;
  }

  function notice(text) {
    const box = $('notice');
    box.textContent = text || '';
    box.hidden = !text;
  }

  function askForToken(why) {
    $('token-form').hidden = false;
    $('forget-token').hidden = true;
    notice(why);
  }

  const number = (n) => Number(n).toLocaleString('en');
  const shortId = (id) => (id && id.length > 13 ? id.slice(0, 8) + '…' + id.slice(-4) : id || '');
  const errorText = (e) => (e ? e.code + ': ' + e.message : '');

  function setText(id, text) { $(id).textContent = text; }

  function drawChart(minutes) {
    const chart = $('chart');
    chart.replaceChildren();
    const height = 120;
    const width = 600 / Math.max(minutes.length, 1);
    const top = Math.max(1, ...minutes.map((m) => Math.max(m.ids, m.jobs)));
    chart.append(svg('line', { x1: 0, y1: height, x2: 600, y2: height, class: 'axis' }));
    minutes.forEach((m, i) => {
      const x = i * width;
      const ids = (m.ids / top) * height;
      const jobs = (m.jobs / top) * height;
      const bar = svg('rect', { x: x + 1, y: height - ids, width: width - 2, height: ids, class: 'ids' });
      bar.append(svg('title'));
      bar.firstChild.textContent = m.minute + ': ' + m.ids + ' IDs in ' + m.jobs + ' calls';
      chart.append(bar);
      chart.append(svg('rect', { x: x + width / 4, y: height - jobs, width: width / 2, height: jobs, class: 'jobs' }));
    });
    const label = (x, y, text, anchor) => {
      const t = svg('text', { x, y, 'text-anchor': anchor });
      t.textContent = text;
      chart.append(t);
    };
    label(2, 10, number(top) + ' per minute', 'start');
    label(2, 136, '60 min ago', 'start');
    label(598, 136, 'now', 'end');
  }

  function drawQuota(quota) {
    const box = $('quota');
    if (!quota.length) {
      box.replaceChildren(el('p', { class: 'muted' }, 'Not read yet (the active flusher polls it).'));
      return;
    }
    box.replaceChildren(...quota.map((q) => {
      const share = q.daily > 0 ? Math.max(0, Math.min(1, q.remaining / q.daily)) : 0;
      const bar = svg('svg', { class: 'quota-bar', viewBox: '0 0 100 10', preserveAspectRatio: 'none', role: 'img' });
      bar.append(svg('rect', { x: 0, y: 0, width: 100, height: 10, class: 'track' }));
      bar.append(svg('rect', { x: 0, y: 0, width: (share * 100).toFixed(1), height: 10, class: share < 0.1 ? 'low' : 'left' }));
      return el('div', { class: 'quota-row' },
        el('div', null, q.kind + ': ' + number(q.remaining) + ' of ' + number(q.daily) + ' URLs left (' + Math.round(share * 100) + '%)'),
        bar);
    }));
  }

  function drawAccounts(accounts) {
    const body = $('accounts');
    body.replaceChildren(...accounts.map((a) => {
      const quota = a.quota.map((q) => q.kind + ' ' + number(q.remaining) + ' / ' + number(q.daily)).join(', ');
      const rate = (a.rate_current == null ? '–' : String(a.rate_current)) + ' of ' + a.rate_configured + '/s';
      return el('tr', { 'data-account': a.name, title: a.endpoint },
        el('td', null, el('code', null, a.name), a.dry_run ? ' (dry run)' : '', a.credential_refused ? ' credential refused' : ''),
        el('td', null, number(a.pending)),
        el('td', null, number(a.due)),
        el('td', null, rate),
        el('td', null, String(a.throttled_last_minute)),
        el('td', null, quota || '–'),
        el('td', { class: a.held.length ? 'status-held' : '' }, a.held.length ? a.held.join(', ') : 'no'));
    }));
    // The jobs filter offers every account; the chosen one stays chosen.
    const select = $('jobs-account');
    const chosen = select.value;
    select.replaceChildren(el('option', { value: '' }, 'all'),
      ...accounts.map((a) => el('option', { value: a.name }, a.name)));
    select.value = accounts.some((a) => a.name === chosen) ? chosen : '';
  }

  function seconds(value) {
    return value < 120 ? Math.round(value) + ' s' : Math.round(value / 60) + ' min';
  }

  function drawStatus(s) {
    setText('q-pending', number(s.queue.pending));
    setText('q-due', number(s.queue.due));
    setText('q-in-flight', number(s.queue.in_flight));
    setText('q-retrying', number(s.queue.retrying));
    setText('q-oldest', s.queue.oldest_age_seconds == null ? '–' : Math.round(s.queue.oldest_age_seconds) + ' s');
    drawChart(s.drain.minutes);
    setText('rate-current', s.drain.rate_current == null ? '–' : String(s.drain.rate_current));
    setText('throttled', String(s.drain.throttled_last_minute));
    const f = s.flusher;
    setText('flusher', f.active_here
      ? 'this replica (' + f.replica + ') is flushing'
      : (f.replica_flushing
        ? 'replica ' + f.replica_flushing + ' is flushing; this one (' + f.replica + ') only ingests'
        : 'no replica is flushing'));
    setText('replica', f.replica);
    drawQuota(s.quota);
    drawAccounts(s.accounts);
    const t = s.time_to_complete;
    setText('q-complete', t.count ? seconds(t.p50) + ' / ' + seconds(t.p90) + ' / ' + seconds(t.p99) : '–');
  }

  function jobRow(job, extra, withAccount) {
    const row = el('tr', { class: 'job', 'data-job': job.id, title: job.id },
      el('td', null, el('code', null, shortId(job.id))),
      ...(withAccount ? [el('td', null, job.account)] : []),
      el('td', { class: 'status-' + job.status }, job.status),
      el('td', null, job.task),
      el('td', null, job.items.length),
      ...extra);
    row.addEventListener('click', (event) => {
      if (event.target.closest('button')) return;
      showJob(job.id);
    });
    return row;
  }

  function drawJobs(jobs) {
    const body = $('jobs');
    if (!jobs.length) {
      body.replaceChildren(el('tr', null, el('td', { colspan: 7, class: 'muted' }, 'No jobs yet.')));
      return;
    }
    // The error's code here; its message is in the job's details (click the row).
    body.replaceChildren(...jobs.map((job) => jobRow(job, [
      el('td', null, el('code', null, shortId(job.vod_job_id))),
      el('td', { class: 'error', title: errorText(job.error) }, job.error ? job.error.code : ''),
    ], true)));
  }

  function actionButton(label, job, path) {
    const button = el('button', { type: 'button', 'data-action': label.toLowerCase(), 'data-job': job.id }, label);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await api(path, { method: 'POST' });
        notice(label + ' of job ' + job.id + ' accepted.');
        refresh();
      } catch (e) {
        const said = label + ' refused (' + e.status + ' ' + e.code + '): ' + e.message;
        if (e.status === 401) askForToken(said + ' Enter the admin token.');
        else notice(said);
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  function drawAttention(failed, recent) {
    const submitFailed = recent.filter((job) => job.items.some((i) => i.outcome === 'submit_failed'));
    const rows = [
      ...failed.map((job) => jobRow(job, [
        el('td', { class: 'error' }, errorText(job.error)),
        el('td', null, actionButton('Retry', job, '/jobs/' + encodeURIComponent(job.id) + '/retry')),
      ])),
      ...submitFailed.filter((job) => !failed.some((f) => f.id === job.id)).map((job) => {
        const item = job.items.find((i) => i.outcome === 'submit_failed');
        return jobRow(job, [
          el('td', { class: 'error' }, 'submission failed: ' + errorText(item.error)),
          el('td', null, actionButton('Resubmit', job, '/jobs/' + encodeURIComponent(job.id) + '/resubmit')),
        ]);
      }),
    ];
    $('failed').replaceChildren(...(rows.length ? rows : [el('tr', null, el('td', { colspan: 6, class: 'muted' }, 'Nothing failed.'))]));
  }

  function itemList(items) {
    return el('table', { class: 'jobs' },
      el('thead', null, el('tr', null, el('th', null, 'media ID or URL'), el('th', null, 'outcome'), el('th', null, 'events'), el('th', null, 'error'))),
      el('tbody', null, ...items.map((i) => el('tr', null,
        el('td', null, el('code', null, i.target || i.media_id)),
        el('td', { class: 'outcome-' + i.outcome }, i.outcome),
        el('td', null, i.events),
        el('td', { class: 'error' }, errorText(i.error))))));
  }

  async function showJob(id) {
    const box = $('job');
    try {
      const job = await api('/jobs/' + encodeURIComponent(id));
      const parts = [
        el('h3', null, 'Job ', el('code', null, job.id)),
        el('p', null, job.status + ', ' + job.task + ', attempt ' + job.attempts + ', created ' + job.created_at +
          (job.vod_job_id ? ', VOD job ' + job.vod_job_id : '')),
        job.error ? el('p', { class: 'error' }, errorText(job.error)) : null,
        itemList(job.items),
      ];
      box.replaceChildren(...parts.filter((part) => part !== null));
      box.hidden = false;
    } catch (e) {
      notice('Cannot read job ' + id + ': ' + e.message);
    }
  }

  /** A media ID, or a file or directory URL (looked up with /targets). */
  async function search(id) {
    const box = $('media');
    try {
      const isUrl = /^https?:\/\//i.test(id);
      const media = isUrl
        ? await api('/targets?url=' + encodeURIComponent(id))
        : await api('/media/' + encodeURIComponent(id));
      if (isUrl) media.media_id = media.target;
      const pending = media.pending.map((p) => el('li', null,
        'pending ' + p.task + ' from ' + p.source + ', due ' + p.due_at + ' (' + p.events + ' events)'));
      box.replaceChildren(
        el('h3', null, isUrl ? (media.kind === 'directory' ? 'Directory ' : 'File ') : 'Media ', el('code', null, media.media_id)),
        pending.length ? el('ul', null, ...pending) : el('p', { class: 'muted' }, 'Nothing pending.'),
        media.jobs.length
          ? el('table', { class: 'jobs' },
            el('thead', null, el('tr', null, el('th', null, 'job'), el('th', null, 'status'), el('th', null, 'task'), el('th', null, 'IDs'), el('th', null, 'outcome'), el('th', null, 'error'))),
            el('tbody', null, ...media.jobs.map((job) => {
              const item = job.items.find((i) => i.target === media.media_id);
              return jobRow(job, [
                el('td', { class: item ? 'outcome-' + item.outcome : '' }, item ? item.outcome : ''),
                el('td', { class: 'error' }, errorText((item && item.error) || job.error)),
              ]);
            })))
          : el('p', { class: 'muted' }, 'No job has carried it.'));
    } catch (e) {
      box.replaceChildren(el('p', { class: 'error' }, 'Search failed: ' + e.message));
    }
  }

  let refreshing = false;
  let refreshFailed = false;
  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      const [status, recent, failed] = await Promise.all([
        api('/ui/status.json'),
        api('/jobs?limit=15' + ($('jobs-account').value ? '&account=' + encodeURIComponent($('jobs-account').value) : '')),
        api('/jobs?status=failed&limit=15'),
      ]);
      drawStatus(status);
      drawJobs(recent.jobs);
      drawAttention(failed.jobs, recent.jobs);
      setText('refreshed', 'updated ' + new Date().toLocaleTimeString());
      if (token()) $('forget-token').hidden = false;
      if (refreshFailed) notice('');
      refreshFailed = false;
    } catch (e) {
      refreshFailed = true;
      // Once the page has asked for the token, its message (perhaps why a button was refused)
      // stays until the operator acts.
      if (e.status === 401) {
        if ($('token-form').hidden) askForToken('The admin token is needed to read this service (' + e.message + ').');
      } else {
        notice('Cannot refresh: ' + e.message);
      }
    } finally {
      refreshing = false;
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
      $('token').value = '';
      $('token-form').hidden = true;
      notice('');
      refresh();
    });
    $('forget-token').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken('The token is forgotten.');
    });
    $('jobs-account').addEventListener('change', () => refresh());
    $('search').addEventListener('submit', (event) => {
      event.preventDefault();
      const id = $('media-id').value.trim();
      if (id) {
        search(id);
        // The address bar holds the search, so it can be pasted into a chat.
        history.replaceState(null, '', '?target=' + encodeURIComponent(id));
      }
    });
    // Deep links: /ui/?target=<media ID or URL> opens that search, /ui/?job=<id> that job.
    const params = new URLSearchParams(window.location.search);
    const linked = { target: params.get('target'), job: params.get('job') };
    const openLinked = () => {
      if (linked.target) {
        $('media-id').value = linked.target;
        search(linked.target);
      }
      if (linked.job) showJob(linked.job);
    };
    if (document.body.dataset.tokenConfigured === 'true' && !token()) {
      askForToken('This service has an admin token: enter it once to see its figures (it stays in this tab only).');
      $('token-form').addEventListener('submit', openLinked, { once: true });
    } else {
      refresh();
      openLinked();
    }
    setInterval(() => { if (document.visibilityState === 'visible') refresh(); }, REFRESH_MS);
    document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') refresh(); });
  });
})();
