;; inspect.scm FILE: evaluates the operating-system FILE the way `guix system'
;; does and prints, one fact per line as an S-expression, what devvm's
;; contract depends on. Run with `guix repl [-L DIR] -- inspect.scm FILE'.
(use-modules (gnu system)
             (gnu system file-systems)
             (gnu system shadow)
             (gnu services)
             (gnu services shepherd)
             (gnu services ssh)
             (guix gexp)
             (guix packages)
             (guix scripts system)
             (ice-9 match)
             (ice-9 textual-ports)
             (srfi srfi-1))

(define os (read-operating-system (cadr (command-line))))
(define services (operating-system-services os))

(define (fact . args) (write args) (newline))

(fact 'host-name (operating-system-host-name os))
(for-each (lambda (u)
            (fact 'user (user-account-name u) (user-account-uid u)
                  (user-account-group u) (user-account-supplementary-groups u)
                  (and (user-account-password u) #t)))
          (operating-system-users os))
(for-each (lambda (fs)
            (fact 'file-system (file-system-mount-point fs)
                  (let ((d (file-system-device fs))) (if (string? d) d "?"))
                  (file-system-type fs) (file-system-flags fs)
                  (file-system-options fs) (file-system-mount-may-fail? fs)
                  (file-system-create-mount-point? fs)))
          (operating-system-file-systems os))
(fact 'kernel-arguments (operating-system-user-kernel-arguments os))
(let ((sudoers (operating-system-sudoers-file os)))
  (fact 'sudoers (if (plain-file? sudoers) (plain-file-content sudoers) "?")))
(fact 'packages
      (map (match-lambda
             ((? package? p) (package-name p))
             (((? package? p) output) (string-append (package-name p) ":" output))
             (_ "?"))
           (operating-system-packages os)))
;; The OpenSSH configuration after every extension (authorized keys of all
;; services folded in), as sshd_config gets it.
(let ((ssh (fold-services services #:target-type openssh-service-type)))
  (match (service-value ssh)
    ((? openssh-configuration? c)
     (fact 'sshd 'port (openssh-configuration-port-number c))
     (fact 'sshd 'password-authentication (openssh-configuration-password-authentication? c))
     (fact 'sshd 'public-key-authentication (openssh-configuration-public-key-authentication? c))
     (fact 'sshd 'allow-tcp-forwarding (openssh-configuration-allow-tcp-forwarding? c))
     (fact 'sshd 'permit-root-login (openssh-configuration-permit-root-login c))
     (fact 'sshd 'extra-content (openssh-configuration-extra-content c))
     (for-each (match-lambda
                 ((user keys ...)
                  (for-each (lambda (k)
                              (fact 'authorized-key user
                                    (if (local-file? k)
                                        (call-with-input-file (local-file-absolute-file-name k)
                                          (lambda (port) (get-string-all port)))
                                        "?")))
                            keys)))
               (openssh-configuration-authorized-keys c)))))
;; The Shepherd services: provisions and requirements.
(for-each (lambda (s)
            (fact 'shepherd (shepherd-service-provision s) (shepherd-service-requirement s)))
          (shepherd-configuration-services
           (service-value (fold-services services #:target-type shepherd-root-service-type))))
