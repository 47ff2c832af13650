;; dev-vm.scm: the Guix System that `devvm up` boots for this checkout.
;; Written by `devvm init`; yours to edit. devvm rebuilds the VM whenever this
;; file, channels.scm, the manifest or any file they load changes.
;;
;; Contract with devvm (keep these when you edit):
;;  - a service providing `networking' (sshd waits for it);
;;  - OpenSSH with password login off and the keys devvm writes to
;;    {{.AuthorizedKeys}};
;;  - one 9p file-system per share whose `device' is the share's tag in the
;;    Vmfile; devvm passes the matching -virtfs at launch, so the checkout's
;;    path is never baked into the build.
(use-modules (gnu)
             (gnu system)
             (guix packages)
             (guix profiles)
             (srfi srfi-1))
(use-service-modules networking ssh)
(use-package-modules certs)

(define %devvm-user {{scm .User}})
{{if or .Manifest .PackageFile}}
;; Entries of a manifest as operating-system packages, minus those
;; %base-packages already has: two variants of one package (say, the `tar'
;; among a package's development inputs and the base one) would conflict.
(define (devvm-manifest-packages manifest)
  (let ((base (map (lambda (p) (package-name (if (package? p) p (car p))))
                   %base-packages)))
    (filter-map (lambda (entry)
                  (and (not (member (manifest-entry-name entry) base))
                       (list (manifest-entry-item entry)
                             (manifest-entry-output entry))))
                (manifest-entries manifest))))
{{end}}
(define %devvm-packages
{{- if .Manifest}}
  ;; The project's manifest: the same packages as `guix shell -m'.
  (devvm-manifest-packages (load {{scm .Manifest}}))
{{- else if .PackageFile}}
  ;; The development inputs of the project's package, like
  ;; `guix shell -D -f guix.scm'.
  (devvm-manifest-packages
   (package->development-manifest (load {{scm .PackageFile}})))
{{- else}}
  (specifications->packages
   '({{range $i, $p := .Packages}}{{if $i}} {{end}}{{scm $p}}{{end}}))
{{- end}})

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
  (file-systems (cons* (file-system
                         (mount-point "/")
                         (device "/dev/vda1")
                         (type "ext4"))
{{- range .Shares}}
                       (file-system
                         (mount-point {{scm .Guest}})
                         (device {{scm .Tag}})
                         (type "9p")
                         {{- if .ReadOnly}}
                         (flags '(read-only))
                         {{- end}}
                         (options "trans=virtio,version=9p2000.L,msize=104857600")
                         (check? #f)
                         (create-mount-point? #t)
                         ;; Boot and sshd survive a missing share.
                         (mount-may-fail? #t))
{{- end}}
                       %base-file-systems))
  (users (cons (user-account
                 (name %devvm-user)
                 (uid {{.UID}})
                 (group "users")
                 (supplementary-groups '("wheel")))
               %base-user-accounts))
  (sudoers-file (plain-file "sudoers"
                            "root ALL=(ALL) ALL\n%wheel ALL=(ALL) NOPASSWD: ALL\n"))
  (packages (append %devvm-packages %base-packages))
  (services
   (cons* (service static-networking-service-type
                   (list %qemu-static-networking))
          (service openssh-service-type
                   (openssh-configuration
                    (port-number 22)
                    (permit-root-login #f)
                    (password-authentication? #f)
                    (authorized-keys
                     `((,%devvm-user ,(local-file {{scm .AuthorizedKeys}}
                                                  "devvm-authorized-keys"))))
                    ;; Drop a client that stopped answering (a sleeping
                    ;; laptop) within a minute, so a share served over SSH
                    ;; fails with an I/O error instead of hanging.
                    (extra-content "ClientAliveInterval 15\nClientAliveCountMax 4\n")))
          %base-services)))
