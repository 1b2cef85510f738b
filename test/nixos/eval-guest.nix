# Evaluates a rendered guest flake against stand-ins for its inputs, to check what
# it declares without nixpkgs or network:
# - nixpkgs.lib.nixosSystem returns its arguments instead of building a system;
# - microvm.nixosModules.microvm and the guest flake's modules are marker strings;
# - Blixard's own guest module is applied to a `config` that is its own result plus
#   microvm.nix's defaults for the options it reads (graphics, devices, qemu.machine),
#   a lib with only the three functions it uses (mkDefault returns a tagged attrset), and
#   a pkgs whose qemu_kvm.override returns its arguments.
# Not checked: microvm.nix's option types, module merging, the built runner.
{ flakeDir, machine ? "microvm" }:
let
  flake = import (flakeDir + "/flake.nix");
  lib = {
    any = builtins.any;
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
    mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
  };
  stubInputs = {
    nixpkgs.lib.nixosSystem = args: args;
    microvm.nixosModules.microvm = "microvm.nixosModules.microvm";
    # any module name the rendered flake asks for
    guest.nixosModules = builtins.listToAttrs (map (n: { name = n; value = "guest.nixosModules.${n}"; })
      [ "default" "web" "myvm" "x" ]);
  };
  outputs = flake.outputs (stubInputs // { self = outputs; });
  names = builtins.attrNames outputs.nixosConfigurations;
  sys = outputs.nixosConfigurations.${builtins.head names};
  applyGuest = m:
    let
      res = m {
        inherit lib;
        # qemu_kvm.override records what it was asked for
        pkgs.qemu_kvm.override = args: { overrideOf = "qemu_kvm"; inherit args; };
        config.microvm = res.microvm // {
          graphics.enable = false;
          devices = [ ];
          qemu = (res.microvm.qemu or { }) // { inherit machine; };
        };
      };
    in res;
  describe = m:
    if builtins.isString m then { marker = m; }
    else if builtins.isPath m then { path = baseNameOf m; }
    else if builtins.isFunction m then { guest = applyGuest m; }
    else throw "unexpected module";
in {
  description = flake.description;
  inputs = flake.inputs;
  inherit names;
  system = sys.system;
  modules = map describe sys.modules;
}
