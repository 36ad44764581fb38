// Who the engine panel speaks for: a login with the engine's OIDC provider (authorization
// code with PKCE, in this tab), or a token pasted for single-user mode and API keys.
// Tokens live only in this tab's sessionStorage and go out only in Authorization headers:
// never in a URL, the page, or the web view's logs. The provider's one-time code comes back
// in the URL, is exchanged at once and taken off the address bar.
import { json } from "./common.js";

const TOKEN = "runstream.engine.token";
const REFRESH = "runstream.engine.refresh";
const ID_TOKEN = "runstream.engine.id-token";
const PENDING = "runstream.login.pending"; // the login under way: state, verifier, endpoints
const GRANTS = "runstream.login.grants"; // where refresh tokens go: the provider's token endpoint
const EARLY_S = 30; // refresh a token this long before it expires

const store = sessionStorage;
let provider = null; // {issuer, client_id, endpoints} when the engine names a web client
let renewal = null;

export function token() {
  return store.getItem(TOKEN);
}

export function useToken(value) {
  forget();
  store.setItem(TOKEN, value);
}

export function forget() {
  for (const key of [TOKEN, REFRESH, ID_TOKEN, GRANTS]) store.removeItem(key);
  clearTimeout(renewal);
}

export function canLogIn() {
  return provider !== null;
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

function here() {
  return location.origin + location.pathname;
}

// The engine's provider and web client (GET /auth/config, relayed), then the provider's
// own endpoints from its discovery document. Without either the panel takes a pasted token.
export async function discover() {
  let config;
  try {
    config = await json("/api/engine/auth/config");
  } catch (error) {
    return null; // 404: the engine takes no OIDC tokens; 502: it will be asked again on reload
  }
  if (!config.web_client_id) return null;
  const endpoints = await json(config.issuer.replace(/\/$/, "") + "/.well-known/openid-configuration");
  provider = { issuer: config.issuer, client_id: config.web_client_id, endpoints };
  return provider;
}

// To the provider's login page; it sends the browser back here with a one-time code.
export async function logIn() {
  const verifier = random();
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const state = random();
  store.setItem(PENDING, JSON.stringify({ state, verifier, redirect: here(), client_id: provider.client_id,
    token_endpoint: provider.endpoints.token_endpoint }));
  const query = new URLSearchParams({ response_type: "code", client_id: provider.client_id,
    redirect_uri: here(), scope: "openid", state, code_challenge: challenge,
    code_challenge_method: "S256" });
  location.assign(provider.endpoints.authorization_endpoint + "?" + query);
}

// Back from the provider: the code exchanged for tokens, the URL cleaned. Returns null when
// this load is no return from a login, else "" on success or what went wrong.
export async function finishLogIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has("state") || !(params.has("code") || params.has("error"))) return null;
  const pending = JSON.parse(store.getItem(PENDING) || "null");
  store.removeItem(PENDING);
  history.replaceState(null, "", location.pathname); // the code never stays in the address bar
  if (params.has("error")) return "login refused: " + (params.get("error_description") || params.get("error"));
  if (!pending || pending.state !== params.get("state")) return "login answer for another login: log in again";
  try {
    await grant(pending.token_endpoint, pending.client_id, { grant_type: "authorization_code",
      code: params.get("code"), redirect_uri: pending.redirect, code_verifier: pending.verifier });
  } catch (error) {
    return "login failed: " + error.message;
  }
  return "";
}

async function grant(endpoint, clientId, fields) {
  const reply = await fetch(endpoint, { method: "POST",
    body: new URLSearchParams({ client_id: clientId, ...fields }) });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok || !body.access_token) {
    throw new Error(body.error_description || body.error || reply.statusText || "no token");
  }
  store.setItem(TOKEN, body.access_token);
  if (body.refresh_token) store.setItem(REFRESH, body.refresh_token);
  if (body.id_token) store.setItem(ID_TOKEN, body.id_token);
  store.setItem(GRANTS, JSON.stringify({ endpoint, clientId }));
  keepFresh(body.expires_in);
}

// A new access token from the refresh token shortly before this one expires; onLost is told
// when that fails (the provider's session ended): the panel then offers to log in again.
let onLost = () => {};
export function whenLost(callback) {
  onLost = callback;
}

function keepFresh(seconds) {
  clearTimeout(renewal);
  if (!seconds || !store.getItem(REFRESH)) return;
  renewal = setTimeout(async () => {
    const { endpoint, clientId } = JSON.parse(store.getItem(GRANTS) || "{}");
    try {
      await grant(endpoint, clientId, { grant_type: "refresh_token", refresh_token: store.getItem(REFRESH) });
    } catch (error) {
      forget();
      onLost("your login ended: " + error.message);
    }
  }, Math.max(1, seconds - EARLY_S) * 1000);
}

// After a reload: the token kept in this tab, renewed on the same schedule.
export function resume() {
  const access = token();
  if (!access || !store.getItem(REFRESH)) return;
  try {
    const claims = JSON.parse(atob(access.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    keepFresh(claims.exp - Date.now() / 1000);
  } catch (error) { /* not a JWT: an API key or the shared token, kept as it is */ }
}

// Out here and at the provider. The ID token goes in a POST body, never in a URL.
export function logOut() {
  const idToken = store.getItem(ID_TOKEN);
  forget();
  const end = provider && provider.endpoints.end_session_endpoint;
  if (!end || !idToken) return false;
  const form = document.createElement("form");
  form.method = "POST";
  form.action = end;
  form.hidden = true;
  for (const [name, value] of Object.entries({ id_token_hint: idToken, client_id: provider.client_id,
    post_logout_redirect_uri: here() })) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.append(input);
  }
  document.body.append(form);
  form.submit();
  return true;
}
