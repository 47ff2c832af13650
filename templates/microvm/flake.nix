# devvm's microvm.nix template: one flake, several MicroVMs (vm1, vm2, …) run by
# microvm.nix's qemu runner. The same flake serves both ways devvm runs them:
#
#   local (no [microvm.remote] in the Vmfile): `devvm up vm1` builds
#     .#nixosConfigurations.vm1.config.microvm.declaredRunner and runs its
#     bin/microvm-run; SSH goes through the qemu user-network forward below
#     (127.0.0.1:2201 -> guest 22 for vm1, 2202 for vm2, …).
#   remote ([microvm.remote]): the hypervisor (a NixOS host importing
#     microvm.nixosModules.host) creates them with `microvm -c vm1 -f <flake>`,
#     devvm reaches the guests at 10.N.0.2 through the hypervisor; give each VM a
#     tap interface and a bridge there (see microvm.nix's "simple network" docs).
#
# Put your public SSH key (and devvm's: ~/.local/share/devvm/id_ed25519.pub) in
# `authorizedKeys` below.
{
  description = "MicroVMs managed with devvm";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    microvm = {
      url = "github:microvm-nix/microvm.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, microvm }:
    let
      system = "x86_64-linux";
      user = "dev";
      authorizedKeys = [
        # "ssh-ed25519 AAAA… you@laptop"
      ];
      # One entry per VM: its index N gives the SSH forward port 220N, the
      # guest address 10.N.0.2 and unique MAC/interface names.
      vms = {
        vm1 = { index = 1; };
        vm2 = { index = 2; };
      };
      mkVM = name: { index }: nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          microvm.nixosModules.microvm
          ({ pkgs, ... }: {
            networking.hostName = name;
            system.stateVersion = "25.05";

            microvm = {
              hypervisor = "qemu";
              vcpu = 2;
              mem = 1024;
              # Control socket: bin/microvm-shutdown uses it for a clean halt.
              socket = "control.socket";
              # Share the host's store read-only instead of building a disk image.
              shares = [{
                proto = "9p";
                tag = "ro-store";
                source = "/nix/store";
                mountPoint = "/nix/.ro-store";
              }];
              # Persistent /var (relative: created in the VM's state directory).
              volumes = [{
                image = "var.img";
                mountPoint = "/var";
                size = 2048;
              }];
              interfaces = [{
                type = "user";
                id = "qemu-${name}";
                mac = "02:00:00:00:00:0${toString index}";
              }];
              # devvm reads this with `nix eval --json` to find the SSH port.
              forwardPorts = [{
                from = "host";
                host.port = 2200 + index;
                guest.port = 22;
              }];
            };

            services.openssh = {
              enable = true;
              settings.PasswordAuthentication = false;
              # Drop a client that stopped answering (a sleeping laptop) within a minute, so a share served over
              # SSH fails with an I/O error instead of hanging.
              settings.ClientAliveInterval = 15;
              settings.ClientAliveCountMax = 4;
            };
            networking.firewall.allowedTCPPorts = [ 22 ];
            users.users.${user} = {
              isNormalUser = true;
              extraGroups = [ "wheel" ];
              openssh.authorizedKeys.keys = authorizedKeys;
            };
            security.sudo.wheelNeedsPassword = false;
            environment.systemPackages = with pkgs; [ git vim htop ];
          })
        ];
      };
    in
    {
      nixosConfigurations = nixpkgs.lib.mapAttrs mkVM vms;
      packages.${system} = nixpkgs.lib.mapAttrs
        (name: _: self.nixosConfigurations.${name}.config.microvm.declaredRunner)
        vms;
    };
}
