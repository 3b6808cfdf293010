// The question page: asks POST /v1/ask/stream and shows the draft as it is written, then the
// checked answer with its cited sentences highlighted in their passages; lists, uploads and
// removes the documents (/v1/documents). No framework, no external URLs: everything talks to the
// service that served this page.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "rag.apiKey";
const RECENT_STORE = "rag.recent";
const RECENT_MAX = 10;
const HISTORY_MAX = 6; // earlier turns sent with a question (the service bounds them too)
const JOB_POLL_MS = 500; // how often an upload's job is asked where it is
const JOB_MISSES = 20; // polls in a row that may fail before an upload is given up on

let current = null; // {controller, draft} of the question being answered, or null
// This page's conversation, oldest first: a follow-up ("Where did he say that?") is sent with
// it, and the service rewrites it to stand alone.
let conversation = [];
let documentNames = new Map(); // document id -> the name it was uploaded under, from the list
let uploading = Promise.resolve(); // uploads run one after another, as the service indexes them
let listing = 0; // the latest documents list asked for: an older answer is dropped

// ---- small helpers ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// localStorage can be missing or refuse writes (private windows, disabled storage).
function load(name, fallback) {
  try {
    const value = localStorage.getItem(name);
    return value === null ? fallback : JSON.parse(value);
  } catch {
    return fallback;
  }
}

function save(name, value) {
  try {
    if (value === null) localStorage.removeItem(name);
    else localStorage.setItem(name, JSON.stringify(value));
  } catch {
    /* the page still works, it just forgets */
  }
}

function setStatus(text, kind = "") {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

function headers(json) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = load(KEY_STORE, "");
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

// Offsets from the service count Unicode code points (Python strings); JS strings count UTF-16
// units, so slice on an array of code points to stay exact beyond the Basic Multilingual Plane.
function sliceCodePoints(text, start, end) {
  return Array.from(text).slice(start, end).join("");
}

// fetch with the key; resolves {status, body}, status 0 when the service could not be reached.
async function requestJson(url, options = {}) {
  try {
    const response = await fetch(url, { headers: headers(false), cache: "no-store", ...options });
    return { status: response.status, body: await response.json().catch(() => ({})) };
  } catch {
    return { status: 0, body: {} };
  }
}

// The service's error as one sentence: the first file's reason when it names files (as written:
// it may start with the file's name), else its message.
function errorText(error, status) {
  const reason = error?.details?.[0]?.reason;
  if (reason) return /[.!?]$/.test(reason) ? reason : `${reason}.`;
  if (error?.message) return sentence(error.message);
  return status === 0 ? "Cannot reach the service (is rag serve running?)."
    : `The service answered HTTP ${status}.`;
}

// ---- the service's state: loading, failed, down, needs a key ---------------------------------

function showService(text) {
  const banner = $("service");
  banner.textContent = text;
  banner.hidden = !text;
}

// Polls /readyz until the service is ready; resolves true then, false if it failed to load.
let waiting = null; // the one poll in progress, shared by its callers

function waitUntilReady() {
  waiting ??= pollReady().finally(() => { waiting = null; });
  return waiting;
}

async function pollReady() {
  for (;;) {
    let response;
    try {
      response = await fetch("/readyz", { headers: headers(false), cache: "no-store" });
    } catch {
      showService("The service is not reachable (is rag serve running?). Retrying…");
      await sleep(3000);
      continue;
    }
    if (response.ok) {
      showService("");
      return true;
    }
    if (response.status === 401) {
      askForKey();
      return true; // the question routes will say the same; let them
    }
    const body = await response.json().catch(() => ({}));
    if (body.status === "failed") {
      showService(`The service failed to load: ${body.error || "see its log"}.`);
      return false;
    }
    showService("The service is still loading the index and models; the page will be ready in a moment…");
    await sleep(2000);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function askForKey(rejected) {
  $("key-panel").open = true;
  setStatus(rejected
    ? "The service did not accept the API key. Enter the right key under “API key”, then ask again."
    : "This service requires an API key. Enter it under “API key”, then ask again.", "error");
  $("api-key").focus();
}

// ---- asking: POST /v1/ask/stream, read Server-Sent Events from the body ----------------------

async function ask(question) {
  question = question.trim();
  if (!question) return;
  cancel(); // one question at a time
  const controller = new AbortController();
  const run = { controller, draft: "" };
  current = run;
  remember(question);
  resetResult(question);
  setBusy(true);
  setStatus("Searching the documents…");

  try {
    const response = await fetch("/v1/ask/stream", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({ question, history: conversation.slice(-HISTORY_MAX) }),
      signal: controller.signal,
    });
    if (!response.ok) return await showHttpError(response);
    for await (const [event, data] of readEvents(response.body)) {
      if (current !== run) return;
      if (event === "passages") onPassages(data);
      else if (event === "delta") onDelta(run, data.text);
      else if (event === "answer") return onAnswer(run, data);
      else if (event === "error") return onError(run, data.error);
    }
    setStatus("The service closed the stream before the answer was complete. Try again.", "error");
  } catch (exc) {
    if (current !== run) return; // a newer question took over
    if (exc.name === "AbortError") {
      markDraft("stopped");
      setStatus("Stopped.");
    } else {
      setStatus("Cannot reach the service (is rag serve running?).", "error");
    }
  } finally {
    if (current === run) {
      current = null;
      setBusy(false);
    }
  }
}

// Yields [event, data] for each event block of an SSE body; comment lines (": ...") are skipped.
// The service ends lines with "\n" only (rag/http_app.py, _sse).
async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield [event, JSON.parse(data.join("\n"))];
    }
  }
}

function cancel() {
  if (current) current.controller.abort();
}

async function showHttpError(response) {
  const body = await response.json().catch(() => ({}));
  const message = body.error?.message || `${response.status} ${response.statusText}`;
  $("result").hidden = true;
  if (response.status === 401) askForKey(Boolean(load(KEY_STORE, "")));
  else if (response.status === 503) {
    // Loading, failed to load, or too many questions waiting: the service's own words (once).
    setStatus($("service").textContent === sentence(message) ? "" : sentence(message), "error");
    waitUntilReady().then((ready) => {
      if (ready && $("status").textContent === sentence(message)) {
        setStatus("The service is ready now: ask again.");
      }
    });
  } else setStatus(sentence(message), "error");
}

function sentence(text) {
  text = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

// ---- rendering -------------------------------------------------------------------------------

function resetResult(question) {
  $("result").hidden = false;
  $("answer").replaceChildren();
  $("answer").className = "answer draft";
  $("answer-box").className = "answer-box";
  $("draft-note").hidden = true;
  $("confidence").hidden = true;
  $("refusal").hidden = true;
  $("sources").hidden = true;
  $("citations").replaceChildren();
  $("passages").replaceChildren();
  $("passages-panel").hidden = true;
  $("searching").hidden = true;
  $("meta").textContent = "";
  const link = `${location.origin}/?q=${encodeURIComponent(question)}`;
  $("permalink").href = link;
  $("permalink").textContent = "Copy link to this question";
}

function setBusy(busy) {
  $("result").setAttribute("aria-busy", String(busy));
  $("stop").hidden = !busy;
}

function onPassages(data) {
  setStatus("Writing the answer…");
  showSearching(data.standalone_question);
  renderPassages(data.passages);
}

function onDelta(run, text) {
  run.draft += text;
  $("answer").textContent = run.draft;
  setStatus("Writing the answer… (a draft: it is checked against the documents next)");
}

function onAnswer(run, answer) {
  window.lastAnswer = answer; // the page's own data, for debugging and the browser test
  showSearching(answer.standalone_question);
  rememberTurn(answer);
  // A source the list does not know was added since (by another page): its name is looked up.
  if (answer.citations.some((c) => !documentNames.has(c.source))) refreshDocuments();
  renderPassages(answer.passages);
  const seconds = answer.timings?.total_s;
  $("meta").textContent = `${answer.model}${seconds !== undefined ? ` · ${seconds.toFixed(1)} s` : ""}`;
  if (answer.refused) {
    $("refusal-text").textContent = answer.answer;
    $("refusal").hidden = false;
    if (run.draft.trim()) markDraft("withdrawn");
    else $("answer-box").className = "answer-box empty";
    setStatus("");
    return;
  }
  renderAnswer(answer);
  renderConfidence(answer.confidence);
  renderCitations(answer);
  setStatus("");
}

// The estimated probability that the answer is right, said plainly with its number.
function renderConfidence(confidence) {
  if (confidence === null || confidence === undefined) return;
  const words = confidence >= 0.9 ? "very likely right" : confidence >= 0.7 ? "likely right"
    : confidence >= 0.5 ? "possibly right" : "uncertain";
  $("confidence").textContent = `Confidence: ${words} (${confidence.toFixed(2)})`;
  $("confidence").hidden = false;
}

function onError(run, error) {
  markDraft("stopped");
  setStatus(`The service could not answer: ${error?.message || "unknown error"}`, "error");
}

const DRAFT_NOTES = {
  withdrawn: "The draft was withdrawn: not supported by the documents.",
  stopped: "Stopped before the draft was checked.",
};

// The draft stays visible, struck through, with a note: what was shown is never silently
// swapped for something else.
function markDraft(why) {
  if (!$("answer").textContent) return;
  $("answer").className = `answer draft ${why}`;
  $("draft-note").textContent = DRAFT_NOTES[why];
  $("draft-note").className = `draft-note ${why}`;
  $("draft-note").hidden = false;
}

function showSearching(standalone) {
  if (!standalone) return;
  $("searching").textContent = `Searching for: ${standalone}`;
  $("searching").hidden = false;
}

// The answer text, with each citation marker [n] a link to its card. Markers the text already
// has are linked in place; citations it does not mention are appended, as `rag ask` prints them.
function renderAnswer(answer) {
  const ids = new Set(answer.citations.map((c) => c.id));
  const node = $("answer");
  node.className = "answer final";
  node.replaceChildren();
  const mentioned = new Set();
  const parts = answer.answer.split(/(\[\d+\])/);
  for (const part of parts) {
    const id = Number(part.slice(1, -1));
    if (/^\[\d+\]$/.test(part) && ids.has(id)) {
      node.append(marker(id));
      mentioned.add(id);
    } else node.append(part);
  }
  for (const c of answer.citations) {
    if (!mentioned.has(c.id)) node.append(" ", marker(c.id));
  }
}

function marker(id) {
  const link = el("a", { href: `#cite-${id}`, class: "marker", "aria-label": `source ${id}` }, `[${id}]`);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    revealCard($(`cite-${id}`));
  });
  return link;
}

function revealCard(card) {
  for (const other of document.querySelectorAll(".card.active")) other.classList.remove("active");
  card.classList.add("active");
  card.scrollIntoView({ behavior: "smooth", block: "center" });
  card.focus({ preventScroll: true });
}

// One card per citation: the document (its page, for a PDF), and the passage with the quote
// marked at its offsets.
function renderCitations(answer) {
  const list = $("citations");
  for (const c of answer.citations) {
    const passage = answer.passages.find((p) => p.chunk_id === c.chunk_id);
    const page = Number.isInteger(c.page) ? [`page ${c.page}`] : [];
    list.append(el("li", { id: `cite-${c.id}`, class: "card", tabindex: "-1" },
      el("p", { class: "card-head" },
        el("span", { class: "card-id" }, `[${c.id}]`), " ",
        sourceName(c.source), " ",
        details(...page, `characters ${c.start}–${c.end}`, `support ${c.score.toFixed(2)}`)),
      quoteInPassage(c, passage)));
  }
  $("sources").hidden = answer.citations.length === 0;
}

// The passage text with the cited sentence in <mark>. The quote sits at c.start - p.start in
// the passage of the same chunk; if that does not hold (a cited passage that was not among the
// retrieved ones), the quote is shown on its own.
function quoteInPassage(c, passage) {
  const box = el("blockquote", { class: "passage" });
  if (passage) {
    const from = c.start - passage.start;
    const to = c.end - passage.start;
    if (from >= 0 && sliceCodePoints(passage.text, from, to) === c.quote) {
      const n = Array.from(passage.text).length;
      box.append(sliceCodePoints(passage.text, 0, from), el("mark", {}, c.quote),
        sliceCodePoints(passage.text, to, n));
      return box;
    }
  }
  box.append(el("mark", {}, c.quote));
  return box;
}

// "characters 977–1182 · score 0.0325", each part kept on one line.
function details(...parts) {
  const node = el("span", { class: "muted" });
  parts.forEach((part, i) => node.append(i ? " · " : "", el("span", { class: "nowrap" }, part)));
  return node;
}

function renderPassages(passages) {
  if (!passages) return;
  const list = $("passages");
  list.replaceChildren(...passages.map((p, rank) => el("li", { class: "card" },
    el("p", { class: "card-head" },
      el("span", { class: "card-id" }, `#${rank + 1}`), " ",
      sourceName(p.source), " ",
      details(`characters ${p.start}–${p.end}`, `score ${p.score.toFixed(4)}`)),
    el("blockquote", { class: "passage" }, p.text))));
  $("passage-count").textContent = String(passages.length);
  $("passages-panel").hidden = passages.length === 0;
}

// ---- the conversation ------------------------------------------------------------------------

function rememberTurn(answer) {
  const asked = answer.standalone_question || answer.question;
  conversation.push({ role: "user", content: asked }, { role: "assistant", content: answer.answer });
  // The permalink asks the question as it stands alone.
  $("permalink").href = `${location.origin}/?q=${encodeURIComponent(asked)}`;
  renderConversation();
}

function renderConversation() {
  const earlier = conversation.length / 2;
  $("conversation").hidden = earlier === 0;
  $("conversation-count").textContent =
    `${earlier} earlier question${earlier === 1 ? "" : "s"}`;
}

// ---- recent questions and the permalink ------------------------------------------------------

function remember(question) {
  const recent = load(RECENT_STORE, []).filter((q) => q !== question);
  recent.unshift(question);
  save(RECENT_STORE, recent.slice(0, RECENT_MAX));
  renderRecent();
}

function renderRecent() {
  const recent = load(RECENT_STORE, []);
  $("recent").replaceChildren(...recent.map((q) => {
    const button = el("button", { type: "button", class: "link-button" }, q);
    button.addEventListener("click", () => {
      $("question").value = q;
      ask(q);
    });
    return el("li", {}, button);
  }));
  $("recent-box").hidden = recent.length === 0;
}

async function copyPermalink(event) {
  event.preventDefault();
  const link = $("permalink").href;
  try {
    await navigator.clipboard.writeText(link); // needs a secure context (localhost counts)
    $("permalink").textContent = "Link copied";
  } catch {
    // No clipboard here: show the link itself so it can be copied by hand.
    $("permalink").textContent = link;
  }
}

// ---- documents: upload, list, remove (/v1/documents) -----------------------------------------

const STAGES = {
  received: "received…",
  checking: "checking…",
  indexing: "indexing…",
  loading: "loading the new index…",
};

// A document's name as a person gave it; an upload's id is made up by the service.
function displayName(source) {
  return documentNames.get(source) || source;
}

// The source of a card; renamed in place when the documents list arrives after the answer.
function sourceName(source) {
  return el("strong", { "data-source": source }, displayName(source));
}

function renameSources() {
  for (const node of document.querySelectorAll("[data-source]")) {
    node.textContent = displayName(node.dataset.source);
  }
}

function showDocumentsStatus(text, kind = "") {
  $("documents-status").textContent = text;
  $("documents-status").className = `documents-status ${kind}`;
}

async function refreshDocuments() {
  const asked = ++listing;
  const { status, body } = await requestJson("/v1/documents");
  if (asked !== listing) return; // a newer list is on its way
  if (status !== 200) return showDocumentsStatus(errorText(body.error, status), "error");
  showDocumentsStatus("");
  renderDocuments(body.documents);
}

function renderDocuments(documents) {
  documentNames = new Map(documents.map((d) => [d.id, d.name]));
  $("document-list").replaceChildren(...documents.map(documentRow));
  $("documents-state").textContent = `(${documents.length})`;
  renameSources();
}

function documentRow(doc) {
  const label = `Remove ${doc.name}`;
  const remove = el("button", { type: "button", class: "remove", "aria-label": label }, "Remove");
  const row = el("li", { class: "document" },
    el("span", { class: "document-name" }, doc.name), " ",
    details(...documentFacts(doc)), " ", remove,
    el("p", { class: "document-error error", hidden: "" }));
  remove.addEventListener("click", () => removeDocument(doc, row));
  return row;
}

// "PDF · 1.2 MB · 12 pages · 40 chunks"; facts an older index did not keep are left out.
function documentFacts(doc) {
  const facts = [];
  if (doc.type) facts.push(doc.type.toUpperCase());
  if (doc.size > 0) facts.push(humanSize(doc.size));
  if (doc.pages > 0) facts.push(counted(doc.pages, "page"));
  facts.push(counted(doc.chunks, "chunk"));
  return facts;
}

const counted = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let size = bytes / 1024;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size < 10 ? size.toFixed(1) : Math.round(size)} ${units[unit]}`;
}

async function removeDocument(doc, row) {
  if (!window.confirm(`Remove “${doc.name}”? Answers will no longer draw on it.`)) return;
  const button = row.querySelector(".remove");
  button.disabled = true;
  button.textContent = "Removing…";
  showRowError(row, "");
  const url = `/v1/documents/${encodeURIComponent(doc.id)}`;
  const { status, body } = await requestJson(url, { method: "DELETE" });
  if (status === 200) {
    await refreshDocuments();
    showDocumentsStatus(`Removed “${doc.name}”.`);
    $("document-file").focus(); // its row, and the button that had the focus, are gone
    return;
  }
  if (status === 401) askForKey(Boolean(load(KEY_STORE, "")));
  button.disabled = false;
  button.textContent = "Remove";
  showRowError(row, errorText(body.error, status));
}

function showRowError(row, text) {
  const error = row.querySelector(".document-error");
  error.textContent = text;
  error.hidden = !text;
}

// Each file is its own request, so that one the service refuses does not sink the others. The
// rows of earlier uploads that have finished make way.
function uploadFiles(files) {
  if (files.length) for (const row of document.querySelectorAll(".upload.finished")) row.remove();
  for (const file of files) {
    const row = uploadRow(file);
    uploading = uploading.then(() => upload(file, row));
  }
}

function uploadRow(file) {
  const row = el("li", { class: "upload" },
    el("span", { class: "upload-name" }, file.name), " ",
    el("progress", { max: "100", value: "0", "aria-label": `${file.name} sent` }), " ",
    el("span", { class: "upload-percent", "aria-hidden": "true" }, ""), " ",
    el("span", { class: "upload-status" }, "waiting…"));
  $("uploads").append(row);
  return row;
}

function setUploadStatus(row, text, kind = "") {
  const status = row.querySelector(".upload-status");
  status.textContent = text;
  status.className = `upload-status ${kind}`;
  row.classList.toggle("finished", kind !== "");
}

function showProgress(row, fraction) {
  const percent = Math.round(fraction * 100);
  row.querySelector("progress").value = percent;
  row.querySelector(".upload-percent").textContent = `${percent}%`;
}

async function upload(file, row) {
  setUploadStatus(row, "sending…");
  const { status, body } = await send(file, row);
  if (status === 201) return finishUpload(body, row);
  if (status === 202) return finishUpload(await followJob(body, row), row);
  if (status === 401) askForKey(Boolean(load(KEY_STORE, "")));
  setUploadStatus(row, errorText(body.error, status), "error");
}

// XMLHttpRequest rather than fetch: it tells how much of the file has been sent. The service
// answers at once (?wait=false) with a job to follow.
function send(file, row) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/documents?wait=false");
    for (const [name, value] of Object.entries(headers(false))) xhr.setRequestHeader(name, value);
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) showProgress(row, event.loaded / event.total);
    };
    // After a load, an error or an abort alike; status 0 when nothing came back.
    xhr.onloadend = () => resolve({ status: xhr.status, body: xhr.response || {} });
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

// Asks where the upload is every JOB_POLL_MS, showing its stage, until it is done or failed.
async function followJob(job, row) {
  showProgress(row, 1);
  let misses = 0;
  while (job.status === "running") {
    setUploadStatus(row, STAGES[job.stage] || `${job.stage}…`);
    await sleep(JOB_POLL_MS);
    const { status, body } = await requestJson(`/v1/documents/jobs/${encodeURIComponent(job.job)}`);
    if (status === 200) {
      job = body;
      misses = 0;
    } else if (status !== 0 || ++misses >= JOB_MISSES) {
      return { status: "failed", error: body.error || { message: "lost touch with the service "
        + "while it indexed the file; the list below shows what it holds" } };
    }
  }
  return job;
}

function finishUpload(job, row) {
  showProgress(row, 1);
  if (job.status === "done") {
    const duplicate = job.documents?.[0]?.status === "duplicate";
    setUploadStatus(row, duplicate ? "already indexed" : "added", "done");
  } else setUploadStatus(row, errorText(job.error), "error");
  return refreshDocuments(); // a job the service forgot (a restart) may still have added it
}

const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");

function wireDropZone() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    zone.classList.remove("dragging");
    uploadFiles(Array.from(event.dataTransfer.files));
  });
  // Files dragged over the page open the panel; dropped beside the zone they are refused,
  // rather than the browser leaving this page (and its conversation) to show the file.
  document.addEventListener("dragenter", (event) => {
    if (hasFiles(event)) $("documents-panel").open = true;
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event) || zone.contains(event.target)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "none";
  });
  document.addEventListener("drop", (event) => {
    if (hasFiles(event) && !zone.contains(event.target)) event.preventDefault();
  });
}

function wireDocuments() {
  const input = $("document-file");
  input.addEventListener("change", () => {
    uploadFiles(Array.from(input.files));
    input.value = ""; // so that the same file can be chosen again
  });
  wireDropZone();
}

// ---- the API key -----------------------------------------------------------------------------

function renderKeyState() {
  const key = load(KEY_STORE, "");
  $("key-state").textContent = key ? "(set)" : "(none)";
  $("api-key").value = key;
}

// ---- wiring ----------------------------------------------------------------------------------

function start() {
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    ask($("question").value);
  });
  // Enter asks; Shift+Enter is a new line.
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  // Esc anywhere stops the answer being streamed.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && current) {
      event.preventDefault();
      cancel();
    }
  });
  $("stop").addEventListener("click", cancel);
  $("permalink").addEventListener("click", copyPermalink);
  $("new-conversation").addEventListener("click", () => {
    conversation = [];
    renderConversation();
    $("question").focus();
  });
  $("recent-clear").addEventListener("click", () => {
    save(RECENT_STORE, null);
    renderRecent();
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save(KEY_STORE, $("api-key").value.trim() || null);
    renderKeyState();
    setStatus("API key saved in this browser.");
    refreshDocuments();
  });
  $("key-forget").addEventListener("click", () => {
    save(KEY_STORE, null);
    renderKeyState();
    setStatus("API key forgotten.");
  });
  wireDocuments();
  renderKeyState();
  renderRecent();

  // /?q=... asks that question as soon as the service is ready.
  const question = new URLSearchParams(location.search).get("q");
  if (question) $("question").value = question;
  waitUntilReady().then((ready) => {
    if (ready) refreshDocuments();
    if (ready && question) ask(question);
  });
  $("question").focus();
}

start();
