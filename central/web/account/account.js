// The customer's account page: signs in with a one-time code, then shows what
// /account/v1/ answers. Every text is set with textContent: names of goods and offers come
// from tills and head office, and are never parsed as HTML.
"use strict";

const API = "/account/v1";
let challenge = null;
let lastContact = null;
let currentEmail = "";
let pendingEmail = null; // {challenge, email} while a new address awaits its code

const $ = (id) => document.getElementById(id);

function notice(text, isError) {
  const el = $("notice");
  el.textContent = text;
  el.className = isError ? "error" : "";
  el.hidden = !text;
}

async function call(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(API + path, init);
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(data.error || `the server answered ${resp.status}`);
    err.status = resp.status;
    err.retryAfter = resp.headers.get("Retry-After");
    throw err;
  }
  return data;
}

function money(kopecks) {
  const sign = kopecks < 0 ? "-" : "";
  const k = Math.abs(kopecks);
  return `${sign}${Math.floor(k / 100)}.${String(k % 100).padStart(2, "0")}`;
}

function quantity(thousandths) {
  return thousandths % 1000 === 0 ? String(thousandths / 1000) : (thousandths / 1000).toFixed(3);
}

function day(iso) {
  return iso ? iso.slice(0, 10) : "on hold";
}

function item(parent, text, className) {
  const li = document.createElement("li");
  li.textContent = text;
  if (className) li.className = className;
  parent.appendChild(li);
  return li;
}

function contactBody(text) {
  const value = text.trim();
  return value.includes("@") ? { email: value } : { phone: value };
}

async function sendCode() {
  try {
    const answer = await call("POST", "/sign-in/code", contactBody(lastContact));
    challenge = answer.challenge;
    $("code-form").hidden = false;
    $("code").focus();
    notice(`We sent a code by ${answer.channel === "sms" ? "SMS" : "e-mail"}.`);
  } catch (e) {
    const wait = e.retryAfter ? ` (wait ${e.retryAfter} s)` : "";
    notice(e.message + wait, true);
  }
}

$("contact-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  lastContact = $("contact").value;
  await sendCode();
});

$("resend").addEventListener("click", sendCode);

$("code-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await call("POST", "/sign-in", { challenge, code: $("code").value.trim() });
    notice("");
    await showAccount();
  } catch (e) {
    notice(e.message, true);
  }
});

$("sign-out").addEventListener("click", async () => {
  await call("POST", "/sign-out").catch(() => null);
  showSignIn();
});

function showSignIn() {
  $("account").hidden = true;
  $("sign-in").hidden = false;
  $("code-form").hidden = true;
}

async function showAccount() {
  const me = await call("GET", "/me");
  $("sign-in").hidden = true;
  $("account").hidden = false;
  $("who").textContent = me.name || me.phone || me.email || me.id;
  currentEmail = me.email || "";
  $("email").value = currentEmail;
  $("service-opt-out").checked = !!me.service_opt_out;
  $("consent-processing").checked = !!(me.consents.processing && me.consents.processing.granted);
  $("consent-advertising").checked = !!(me.consents.advertising && me.consents.advertising.granted);
  await Promise.all([showBalance(), showOffers(), showHistory()]);
  document.body.dataset.loaded = "yes";
}

async function showBalance() {
  const b = await call("GET", "/balance");
  $("available").textContent = String(b.available);
  $("pending").textContent = String(b.pending);
  $("expiring").textContent = String(b.expiring_within_30_days);
  $("debt").textContent = String(b.debt);
  const pending = $("pending-lots");
  pending.replaceChildren();
  for (const lot of b.pending_lots) item(pending, `${lot.points} points from ${day(lot.activates_at)}`);
  const expiring = $("expiring-lots");
  expiring.replaceChildren();
  for (const lot of b.expiring_lots) item(expiring, `${lot.points} points expire on ${day(lot.expires_at)}`);
}

async function showOffers() {
  const o = await call("GET", "/offers");
  const list = $("offers");
  list.replaceChildren();
  if (!o.offers.length) item(list, "No personal offers right now.");
  for (const offer of o.offers) {
    const li = item(list, `${offer.campaigns.join("; ")}${offer.until ? ` (until ${day(offer.until)})` : ""} `);
    li.dataset.offer = offer.offer;
    if (offer.activated) {
      const done = document.createElement("span");
      done.className = "activated";
      done.textContent = "activated";
      li.appendChild(done);
    } else {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Activate";
      button.addEventListener("click", async () => {
        try {
          await call("POST", "/offers", { offer: offer.offer });
          notice("The offer is activated.");
          await showOffers();
        } catch (e) {
          notice(e.message, true);
        }
      });
      li.appendChild(button);
    }
  }
  const earned = $("earned-offers");
  earned.replaceChildren();
  for (const g of o.earned) item(earned, `Earned offer ${g.offer}, until ${day(g.expires_at)}`);
}

async function showHistory() {
  const h = await call("GET", "/history?limit=20");
  const list = $("receipts");
  list.replaceChildren();
  if (!h.receipts.length) item(list, "No purchases yet.");
  for (const r of h.receipts) {
    const what = r.kind === "sale" ? "Purchase" : "Return";
    const li = item(list, `${what} ${day(r.at)} at ${r.store}: ${money(r.total)}, earned ${r.earned - r.clawback}, spent ${r.redeemed - r.refund}`);
    const goods = document.createElement("ul");
    for (const g of r.goods) item(goods, `${g.name} × ${quantity(g.qty)}: ${money(g.amount)}`);
    li.appendChild(goods);
  }
}

$("contacts-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const email = $("email").value.trim();
    const changes = { service_opt_out: $("service-opt-out").checked };
    if (!email && currentEmail) changes.email = null; // removing needs no proof
    await call("PATCH", "/contacts", changes);
    if (email && email !== currentEmail) {
      // A new address is saved once the code sent to it comes back.
      const sent = await call("POST", "/contacts/email", { email });
      pendingEmail = { challenge: sent.challenge, email };
      $("email-code-form").hidden = false;
      notice("We sent a code to the new address: type it below to confirm it.");
    } else {
      currentEmail = email;
      notice("Saved.");
    }
  } catch (e) {
    notice(e.message, true);
  }
});

$("email-code-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const me = await call("POST", "/contacts/email/confirm", {
      challenge: pendingEmail.challenge, code: $("email-code").value.trim(),
      email: pendingEmail.email });
    currentEmail = me.email || "";
    pendingEmail = null;
    $("email-code-form").hidden = true;
    notice("The new address is saved.");
  } catch (e) {
    notice(e.message, true);
  }
});

for (const kind of ["processing", "advertising"]) {
  $(`consent-${kind}`).addEventListener("change", async (ev) => {
    try {
      await call("POST", "/consents", { kind, granted: ev.target.checked });
      notice("Saved.");
    } catch (e) {
      ev.target.checked = !ev.target.checked;
      notice(e.message, true);
    }
  });
}

$("export").addEventListener("click", () => {
  // A plain navigation: the answer is an attachment, the cookie goes with it.
  window.location.href = API + "/personal-data";
});

$("erase").addEventListener("click", async () => {
  if (!window.confirm("Delete your personal data? Your points stay, but this cannot be undone.")) return;
  try {
    await call("POST", "/erase", { confirm: "erase" });
    showSignIn();
    notice("Your personal data is deleted.");
  } catch (e) {
    notice(e.message, true);
  }
});

// Signed in already (the session cookie is HttpOnly: ask the server).
showAccount().catch(showSignIn);
