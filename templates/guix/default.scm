;; dev-vm.scm: the Guix System that `devvm up' boots for this checkout.
;; Written by `devvm init'; yours to edit: it is a plain operating-system.
;; devvm never rewrites it. At every build devvm loads it from a generated
;; wrapper that adds what the Vmfile asks for: the ssh.user account and
;; devvm's SSH keys, one 9p file system per [[share]], the packages of
;; [guix] manifest, the serial console, and networking if none is here
;; (docs/dev-vm.md, "Bring your own config").
(use-modules (gnu) (gnu system))
(use-service-modules networking ssh)

(operating-system
  (host-name {{scm .HostName}})
  (timezone "Etc/UTC")
  (locale "en_US.utf8")
  ;; `guix system vm' boots the kernel directly; the bootloader is unused.
  (bootloader (bootloader-configuration
               (bootloader grub-bootloader)
               (targets '("/dev/vda"))))
  ;; Serial console: devvm logs it and `devvm console' attaches to it.
  (kernel-arguments (cons "console=ttyS0" %default-kernel-arguments))
  (file-systems (cons (file-system
                        (mount-point "/")
                        (device "/dev/vda1")
                        (type "ext4"))
                      %base-file-systems))
  (packages
   {{- if .Packages}}
   (append (specifications->packages
            '({{range $i, $p := .Packages}}{{if $i}} {{end}}{{scm $p}}{{end}}))
           %base-packages)
   {{- else}}
   ;; The project's packages come from [guix] manifest in the Vmfile.
   %base-packages
   {{- end}})
  (services
   (cons* (service static-networking-service-type
                   (list %qemu-static-networking))
          (service openssh-service-type
                   (openssh-configuration
                    (permit-root-login #f)
                    (password-authentication? #f)))
          %base-services)))
