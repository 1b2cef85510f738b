# A minimal stand-in for nixpkgs' `lib`, enough to evaluate nixos/module.nix without nixpkgs.
#
# What it does:
# - mkOption returns its arguments tagged `_type = "option"`; mkEnableOption is a bool option
#   defaulting to false, as in nixpkgs.
# - types.* are descriptive attrsets { name, check, … } whose `check` is a real predicate
#   (str is a string, ints.positive an int > 0, strMatching matches its regex with
#   builtins.match, enum membership, listOf/attrsOf/nullOr check their elements, path is a
#   path or a string starting with "/" (str rejects a Nix path, as nixpkgs' does), package is an attrset with type = "derivation").
#   Submodules carry their option declarations so defaults inside them can be resolved.
# - mkIf, mkMerge, mkDefault, mkForce return tagged attrsets; eval-module.nix interprets them.
# - the plain functions (filterAttrs, recursiveUpdate, concatMap, …) are written from
#   builtins with nixpkgs' semantics for the arguments the module passes.
#
# What it does not do: nixpkgs' real type merging (two definitions of one option), option
# priorities, `apply`, freeform checks of TOML values (its settings type accepts any attrset),
# and it does not know any option outside services.blixard (systemd, users, microvm, …).
let
  mkType = name: check: extra: { _type = "option-type"; inherit name check; } // extra;
  isPathLike = x: builtins.isPath x || (builtins.isString x && builtins.substring 0 1 x == "/");
  all = builtins.all;
  attrValues = builtins.attrValues;
in
rec {
  types = rec {
    str = mkType "str" builtins.isString { };
    bool = mkType "bool" builtins.isBool { };
    int = mkType "int" builtins.isInt { };
    port = mkType "port" (x: builtins.isInt x && x >= 0 && x <= 65535) { };
    ints = {
      positive = mkType "positiveInt" (x: builtins.isInt x && x > 0) { };
      unsigned = mkType "unsignedInt" (x: builtins.isInt x && x >= 0) { };
    };
    path = mkType "path" isPathLike { };
    package = mkType "package" (x: builtins.isAttrs x && (x.type or null) == "derivation") { };
    strMatching = regex: mkType "strMatching" (x: builtins.isString x && builtins.match regex x != null) { inherit regex; };
    enum = values: mkType "enum" (x: builtins.elem x values) { inherit values; };
    listOf = elemType: mkType "listOf" (x: builtins.isList x && all elemType.check x) { inherit elemType; };
    attrsOf = elemType: mkType "attrsOf" (x: builtins.isAttrs x && all elemType.check (attrValues x)) { inherit elemType; };
    nullOr = elemType: mkType "nullOr" (x: x == null || elemType.check x) { inherit elemType; };
    # freeformType (RFC 42 settings): names not declared are kept and checked by it
    submodule = m:
      let decl = if builtins.isFunction m then m { } else m;
      in mkType "submodule" builtins.isAttrs ({ options = decl.options; } // (if decl ? freeformType then { inherit (decl) freeformType; } else { }));
  };

  mkOption = attrs: { _type = "option"; } // attrs;
  mkEnableOption = what: mkOption { type = types.bool; default = false; description = "Whether to enable ${what}."; };
  literalExpression = text: { _type = "literalExpression"; inherit text; };

  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;

  filterAttrs = pred: set: builtins.listToAttrs (builtins.concatMap
    (n: if pred n set.${n} then [ { name = n; value = set.${n}; } ] else [ ])
    (builtins.attrNames set));
  recursiveUpdate = lhs: rhs: lhs // builtins.mapAttrs
    (n: v: if lhs ? ${n} && builtins.isAttrs lhs.${n} && builtins.isAttrs v then recursiveUpdate lhs.${n} v else v)
    rhs;
  optional = cond: x: if cond then [ x ] else [ ];
  optionalAttrs = cond: set: if cond then set else { };
  optionalString = cond: s: if cond then s else "";
  concatMap = builtins.concatMap;
  concatStringsSep = builtins.concatStringsSep;
  nameValuePair = name: value: { inherit name value; };
  listToAttrs = builtins.listToAttrs;
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  toInt = s: builtins.fromJSON s;
  mapAttrs = builtins.mapAttrs;
  toLower = builtins.replaceStrings
    (builtins.genList (i: builtins.substring i 1 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") 26)
    (builtins.genList (i: builtins.substring i 1 "abcdefghijklmnopqrstuvwxyz") 26);
  unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
}
