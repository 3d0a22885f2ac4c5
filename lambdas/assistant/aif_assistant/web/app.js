// The assistant page: sign in (Cognito hosted UI with PKCE in AWS, a stub locally), ask, render the
// streamed answer and its citations, send feedback. Everything goes to this origin's /api/*; the page
// never holds a gateway key. No inline script or style, so the Content-Security-Policy can forbid both.
"use strict";

const TOKEN = "aif-assistant-id-token";
const VERIFIER = "aif-assistant-pkce";
const $ = (id) => document.getElementById(id);
let config = null;
let conversation = [];

function status(text) { $("status").textContent = text || ""; }

async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error("config.json: HTTP " + response.status);
  return response.json();
}

function token() { return sessionStorage.getItem(TOKEN); }

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function signInWithIdp() {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem(VERIFIER, JSON.stringify({ verifier, state }));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const auth = config.auth;
  const params = new URLSearchParams({
    response_type: "code", client_id: auth.client_id, redirect_uri: auth.redirect_uri,
    scope: "openid email profile", state, code_challenge: challenge, code_challenge_method: "S256",
  });
  if (auth.identity_provider) params.set("identity_provider", auth.identity_provider);
  location.assign(auth.domain + "/oauth2/authorize?" + params.toString());
}

async function finishIdpSignIn() {
  const query = new URLSearchParams(location.search);
  const code = query.get("code");
  if (!code) return;
  window.history.replaceState(null, "", location.pathname);
  const saved = JSON.parse(sessionStorage.getItem(VERIFIER) || "{}");
  sessionStorage.removeItem(VERIFIER);
  if (!saved.state || saved.state !== query.get("state")) { status("Sign-in failed: state mismatch."); return; }
  const auth = config.auth;
  const response = await fetch(auth.domain + "/oauth2/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", client_id: auth.client_id, code,
      redirect_uri: auth.redirect_uri, code_verifier: saved.verifier,
    }),
  });
  if (!response.ok) { status("Sign-in failed: HTTP " + response.status); return; }
  sessionStorage.setItem(TOKEN, (await response.json()).id_token);
}

async function signInLocally(event) {
  event.preventDefault();
  const response = await fetch("auth/local/sign-in", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: $("local-name").value, group: $("local-group").value }),
  });
  const body = await response.json();
  if (!response.ok) { status(body.error ? body.error.message : "Sign-in failed."); return; }
  sessionStorage.setItem(TOKEN, body.id_token);
  await start();
}

function signOut() {
  sessionStorage.removeItem(TOKEN);
  conversation = [];
  $("log").replaceChildren();
  if (config.auth.mode === "cognito") {
    const params = new URLSearchParams({ client_id: config.auth.client_id, logout_uri: config.auth.redirect_uri });
    location.assign(config.auth.domain + "/logout?" + params.toString());
    return;
  }
  showSignIn();
}

function api(path, options) {
  // The ID token goes in a header of its own: CloudFront forwards it to the API under the managed
  // AllViewerExceptHostHeader policy, and API Gateway's Cognito authorizer reads it from there.
  const headers = Object.assign({ "X-Aif-Id-Token": token() }, options && options.headers);
  return fetch("api/" + path, Object.assign({}, options, { headers }));
}

function showSignIn() {
  $("who").hidden = true;
  $("chat").hidden = true;
  $("sign-in").hidden = false;
  const local = config.auth.mode === "local";
  $("local-sign-in").hidden = !local;
  $("idp-sign-in").hidden = local;
  if (local) {
    $("local-group").replaceChildren(...config.auth.groups.map((g) => new Option(g, g)));
  }
}

async function start() {
  const response = await api("me");
  if (response.status === 401) { sessionStorage.removeItem(TOKEN); showSignIn(); return; }
  const me = await response.json();
  if (!response.ok) { showSignIn(); status(me.error ? me.error.message : "HTTP " + response.status); return; }
  status("");
  $("sign-in").hidden = true;
  $("who").hidden = false;
  $("chat").hidden = false;
  $("user-name").textContent = me.name;
  $("user-clearance").textContent = me.clearance;
  const kbs = me.knowledge_bases.map((k) => k.title).join(", ") || "none";
  $("scope").textContent = "Answers draw on: " + kbs + " (what your " + me.clearance + " clearance may read).";
  $("question").focus();
}

function addTurn(role, text) {
  const item = document.createElement("li");
  item.className = "turn " + role;
  item.textContent = text;
  $("log").append(item);
  return item;
}

// Answer text with [n] turned into links to source n; text nodes only, never HTML from the model.
function renderAnswer(node, text, count) {
  node.replaceChildren();
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    if (n < 1 || n > count) continue;
    node.append(text.slice(last, match.index));
    const link = document.createElement("a");
    link.className = "cite";
    link.href = "#" + node.dataset.prefix + "-" + n;
    link.textContent = match[0];
    node.append(link);
    last = match.index + match[0].length;
  }
  node.append(text.slice(last));
}

function renderCitations(turn, citations) {
  const list = turn.querySelector(".citations");
  const prefix = turn.querySelector(".text").dataset.prefix;
  list.replaceChildren(...citations.map((c) => {
    const item = document.createElement("li");
    item.id = prefix + "-" + c.index;
    item.value = c.index;
    const title = document.createElement("strong");
    title.textContent = c.title;
    const kb = document.createElement("span");
    kb.className = "kb";
    kb.textContent = " · " + c.knowledge_base + " (" + c.classification + ")";
    const excerpt = document.createElement("div");
    excerpt.textContent = c.excerpt;
    item.append(title, kb, excerpt);
    return item;
  }));
  turn.querySelector(".sources").hidden = citations.length === 0;
}

function* sseEvents(buffer) {
  let boundary;
  while ((boundary = buffer.text.indexOf("\n\n")) >= 0) {
    const block = buffer.text.slice(0, boundary);
    buffer.text = buffer.text.slice(boundary + 2);
    let name = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (data) yield { name, data: JSON.parse(data) };
  }
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("question").value = "";
  $("send").disabled = true;
  status("");
  addTurn("user", question);
  const turn = document.getElementById("answer-template").content.firstElementChild.cloneNode(true);
  const textNode = turn.querySelector(".text");
  textNode.dataset.prefix = "source-" + $("log").children.length;
  textNode.textContent = "…";
  $("log").append(turn);
  let answer = "", citations = [], requestId = null;
  try {
    const response = await api("chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: question, history: conversation }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : "HTTP " + response.status);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const buffer = { text: "" };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer.text += decoder.decode(value, { stream: true });
      for (const e of sseEvents(buffer)) {
        if (e.name === "citations") { citations = e.data.citations; renderCitations(turn, citations); }
        else if (e.name === "delta") { answer += e.data.text; renderAnswer(textNode, answer, citations.length); }
        else if (e.name === "done") { requestId = e.data.request_id; citations = e.data.citations; renderCitations(turn, citations); }
        else if (e.name === "error") { throw new Error(e.data.message); }
      }
    }
    renderAnswer(textNode, answer, citations.length);
    conversation.push({ role: "user", content: question }, { role: "assistant", content: answer });
    conversation = conversation.slice(-20);
    if (requestId) enableFeedback(turn, requestId);
    turn.dataset.requestId = requestId || "";
    turn.classList.add("complete");
  } catch (error) {
    textNode.textContent = answer || "No answer.";
    status(error.message);
  } finally {
    $("send").disabled = false;
  }
}

function enableFeedback(turn, requestId) {
  const box = turn.querySelector(".feedback");
  box.hidden = false;
  const send = async (score) => {
    box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    const response = await api("feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ request_id: requestId, score }),
    });
    const body = await response.json().catch(() => ({}));
    box.querySelector(".thanks").textContent = response.ok
      ? "Thanks, your feedback was recorded."
      : (body.error ? body.error.message : "Feedback failed.");
    if (!response.ok) box.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  };
  box.querySelector(".up").addEventListener("click", () => send("up"));
  box.querySelector(".down").addEventListener("click", () => send("down"));
}

async function main() {
  try {
    config = await loadConfig();
    $("local-sign-in").addEventListener("submit", signInLocally);
    $("idp-sign-in").addEventListener("click", signInWithIdp);
    $("sign-out").addEventListener("click", signOut);
    $("ask").addEventListener("submit", ask);
    if (config.auth.mode === "cognito") await finishIdpSignIn();
    if (token()) await start(); else showSignIn();
  } catch (error) {
    status("The assistant could not start: " + error.message);
  }
}

main();
