"use strict";
// API keys (#/keys): the gateways' keys, revoked ones included; create one (its secret is shown this once, with a
// copy button) and revoke one. The scopes offered are those the admin API declares (its OpenAPI schema).

view(/^#\/keys$/, async container => {
  const list = el("section", {class: "panel"}, el("h2", {text: "API keys"}), el("div", {class: "keys"}));
  const created = el("div", {class: "outcome", role: "status"});
  const form = el("section", {class: "panel"}, el("h2", {text: "New key"}));
  container.append(created, list, form);
  const refresh = async () => {
    try { showKeys($(".keys", list), (await api("/v1/admin/keys")).keys, refresh); }
    catch (error) { report($(".keys", list), error); }
  };
  refresh();
  keyForm(form, created, refresh);
});

function showKeys(box, keys, refresh) {
  if (!keys.length) { box.replaceChildren(el("p", {class: "muted", text: "No API key yet."})); return; }
  const rows = keys.map(key => el("tr", {class: key.revoked_at ? "revoked" : "", "data-key": key.id},
    el("td", {}, el("code", {text: key.id})), el("td", {text: key.name}), el("td", {text: key.scopes.join(", ")}),
    el("td", {text: key.rate_per_minute ?? "no limit"}), el("td", {text: key.max_collections ?? "gateway's"}),
    el("td", {text: when(key.created_at)}),
    el("td", {}, key.revoked_at ? `revoked ${when(key.revoked_at)}`
      : el("button", {type: "button", text: "revoke", on: {click: () => revoke(key, box, refresh)}}))));
  box.replaceChildren(table(["id", "name", "scopes", "requests / min", "collections", "created", ""], rows, "keys"));
}

async function revoke(key, box, refresh) {
  if (!await confirmAction(`Revoke the key ${key.name} (${key.id})? Every gateway refuses it within seconds.`,
                           "revoke")) return;
  try { await api(`/v1/admin/keys/${key.id}`, {method: "DELETE"}); } catch (error) { report(box, error); return; }
  refresh();
}

// The scopes a key may have, with what each allows, from the admin API's own schema.
async function scopeChoices() {
  const schema = await (await fetch("/openapi.json", {cache: "no-store"})).json();
  return schema.components.schemas.KeyRequest.properties.scopes.items.enum;
}

async function keyForm(box, created, refresh) {
  let scopes;
  try { scopes = await scopeChoices(); } catch (error) { report(box, error); return; }
  const f = el("form", {class: "key-form", method: "post", action: "/", autocomplete: "off"},
    field("name", el("input", {name: "name", required: true, maxlength: 64, size: 24,
                               placeholder: "who uses it"})),
    el("fieldset", {}, el("legend", {text: "scopes"}), scopes.map(scope => el("label", {class: "check"},
      el("input", {type: "checkbox", name: "scope", value: scope, checked: scope === "infer"}), scope))),
    field("requests per minute", el("input", {name: "rate", type: "number", min: 1, placeholder: "no limit"})),
    field("collections at most", el("input", {name: "collections", type: "number", min: 0,
                                              placeholder: "the gateway's limit"})),
    el("div", {class: "actions"}, el("button", {type: "submit", class: "primary", text: "create key"})),
    el("div", {class: "form-message", role: "alert"}));
  box.append(f);
  f.addEventListener("submit", async event => {
    event.preventDefault();
    const number = name => (f.elements[name].value === "" ? null : Number(f.elements[name].value));
    const request = {name: f.elements.name.value.trim(), rate_per_minute: number("rate"),
                     max_collections: number("collections"),
                     scopes: [...f.querySelectorAll("input[name=scope]:checked")].map(input => input.value)};
    try {
      const key = await api("/v1/admin/keys", {method: "POST", body: request});
      f.reset();
      showNewKey(created, key);
      refresh();
    } catch (error) { report($(".form-message", f), error); }
  });
}

function showNewKey(box, key) {
  const secret = el("input", {class: "secret", readonly: true, size: 60});
  secret.value = key.key;  // a property, not an attribute: out of the serialised page
  const copy = el("button", {type: "button", text: "copy", on: {click: async () => {
    try { await navigator.clipboard.writeText(secret.value); }
    catch (_) { secret.select(); document.execCommand("copy"); }  // no clipboard API outside a secure context
    copy.textContent = "copied";
  }}});
  const done = el("button", {type: "button", text: "done", on: {click: () => box.replaceChildren()}});
  box.className = "outcome ok";
  box.replaceChildren(el("strong", {text: `Key ${key.name} (${key.id}) created. Copy it now: it is not shown again.`}),
                      el("div", {class: "row"}, secret, copy, done));
}
